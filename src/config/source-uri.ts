// A source URI is `<scheme>:<rest>`; the scheme picks the adapter, the adapter parses the rest.
import { ADAPTERS, adapterFor } from '../../adapters/registry.js';

const SCHEME = /^([a-z][a-z0-9+.-]*):/;

export type ParsedSourceUri = { ok: true; scheme: string } | { ok: false; reason: string };

export function parseSourceUri(uri: string): ParsedSourceUri {
  const m = SCHEME.exec(uri);
  const known = Object.keys(ADAPTERS).map((s) => `${s}:`).join(', ');
  // The text itself is not echoed: a key pasted where a source URI belongs is still a key.
  if (!m) return { ok: false, reason: `has no source kind: start it with one of ${known}` };
  const scheme = m[1]!;
  if (!adapterFor(scheme)) return { ok: false, reason: `unknown source kind "${scheme}:" — known kinds: ${known}` };
  return { ok: true, scheme };
}
