// A source URI is `<scheme>:<rest>`; the scheme picks the adapter, the adapter parses the rest.
import { ADAPTERS, adapterFor } from '../../adapters/registry.js';
import { closest } from '../did-you-mean.js';

// Loose on purpose (digits and capitals first): `1password://…` and `OP://…` are near misses to
// name, not URIs without a kind.
const SCHEME = /^([A-Za-z0-9][A-Za-z0-9+.-]*):/;

/**
 * What people write for a kind, by the product's name or another tool's spelling. Typos of the
 * real kinds are caught by edit distance; these are too far from them for that.
 */
const SCHEME_ALIASES: Readonly<Record<string, string>> = {
  '1password': 'op',
  onepassword: 'op',
  '1p': 'op',
  hashicorp: 'vault',
  'hashicorp-vault': 'vault',
  kv: 'vault',
  aws: 'aws-sm',
  secretsmanager: 'aws-sm',
  'secrets-manager': 'aws-sm',
  'aws-secrets-manager': 'aws-sm',
  'aws-secretsmanager': 'aws-sm',
  awssm: 'aws-sm',
  sm: 'aws-sm',
  'aws-creds': 'aws-credentials',
  'aws-credential': 'aws-credentials',
  'aws-profile': 'aws-credentials',
  environment: 'env',
  envvar: 'env',
  var: 'env',
  cmd: 'exec',
  command: 'exec',
  shell: 'exec',
  sh: 'exec',
  run: 'exec',
  path: 'file',
};

export type ParsedSourceUri =
  | { ok: true; scheme: string }
  | {
      ok: false;
      reason: string;
      /** The kind it most likely meant, e.g. "op" for `1password://`. */ suggestion?: string;
    };

export function parseSourceUri(uri: string): ParsedSourceUri {
  const m = SCHEME.exec(uri);
  const known = Object.keys(ADAPTERS)
    .map((s) => `${s}:`)
    .join(', ');
  // The text itself is not echoed: a key pasted where a source URI belongs is still a key.
  if (!m) return { ok: false, reason: `has no source kind: start it with one of ${known}` };
  const scheme = m[1]!;
  if (adapterFor(scheme)) return { ok: true, scheme };
  const suggestion = suggestScheme(scheme);
  if (suggestion) {
    const slashes =
      uri.startsWith(`${scheme}://`) && suggestion !== 'env' && suggestion !== 'exec' && suggestion !== 'file'
        ? '//'
        : '';
    return {
      ok: false,
      reason: `unknown source kind "${scheme}:" — did you mean "${suggestion}:${slashes}"? Write ${ADAPTERS[suggestion]!.summary.split(' — ')[0]} (known kinds: ${known})`,
      suggestion,
    };
  }
  return { ok: false, reason: `unknown source kind "${scheme}:" — known kinds: ${known}` };
}

function suggestScheme(scheme: string): string | undefined {
  const lower = scheme.toLowerCase();
  if (adapterFor(lower)) return lower;
  return SCHEME_ALIASES[lower] ?? closest(lower, Object.keys(ADAPTERS));
}
