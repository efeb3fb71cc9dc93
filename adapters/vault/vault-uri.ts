// vault://<mount>/<path>[?version=N][&kv=1|2]#<field> — parsed offline, at config load.
// Segments are percent-decoded here and encoded again per segment when a request path is built,
// so a secret named "a b" is written vault://secret/a%20b.
import { BrokerError } from '../../src/errors.js';

export interface VaultUri {
  /** Decoded path segments, mount first: ["secret", "anthropic"]. */
  segments: string[];
  field?: string;
  /** A pinned KV v2 version. */
  version?: number;
  /** The KV engine version, when the URI names it instead of leaving it to the preflight. */
  kv?: 1 | 2;
  /** The URI in a canonical form, for logs and status (never carries a value). */
  label: string;
}

const PREFIX = 'vault://';
const EXAMPLE = 'vault://secret/anthropic#api_key';
const QUERY_KEYS = ['version', 'kv'];
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

export function parseVaultUri(uri: string): VaultUri {
  // The raw text is never echoed back: whatever was pasted here might be a key.
  if (!uri.startsWith(PREFIX)) throw invalid(`write a Vault source as vault://MOUNT/PATH#FIELD, e.g. ${EXAMPLE}`);
  let rest = uri.slice(PREFIX.length);
  let field: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    field = decode(rest.slice(hash + 1), 'the #field');
    rest = rest.slice(0, hash);
    if (field.length === 0)
      throw invalid(`the #field after the path is empty: name a key of the secret, e.g. ${EXAMPLE}`);
  }
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const rawSegments = rest.split('/');
  if (rawSegments.length < 2 || rawSegments.some((s) => s.length === 0)) {
    throw invalid(`needs a mount and a path with no empty parts, e.g. ${EXAMPLE}`);
  }
  const segments = rawSegments.map((s) => decode(s, 'the path'));
  for (const s of segments) {
    if (s === '.' || s === '..') throw invalid('the path must not contain "." or ".." parts');
    if (s.includes('/')) throw invalid('the path must not contain an encoded "/" (%2F) inside a part');
  }
  const parsed: VaultUri = { segments, label: '' };
  if (field !== undefined) parsed.field = field;
  applyQuery(parsed, query);
  parsed.label = labelOf(parsed);
  return parsed;
}

function applyQuery(parsed: VaultUri, query: string): void {
  if (query === '') return;
  const params = new URLSearchParams(query);
  const seen = new Set<string>();
  for (const [key, value] of params) {
    if (!QUERY_KEYS.includes(key))
      throw invalid(`unknown option "?${key}=" — known options: ?version=N (KV v2) and ?kv=1 or ?kv=2`);
    if (seen.has(key)) throw invalid(`?${key}= is given twice`);
    seen.add(key);
    if (key === 'version') {
      if (!/^[1-9][0-9]{0,9}$/.test(value))
        throw invalid('?version= must be a positive whole number (a KV v2 version)');
      parsed.version = Number(value);
    } else {
      if (value !== '1' && value !== '2') throw invalid('?kv= must be 1 or 2 (the KV secrets engine version)');
      parsed.kv = value === '1' ? 1 : 2;
    }
  }
  if (parsed.kv === 1 && parsed.version !== undefined) {
    throw invalid('?version= needs a KV v2 engine, but ?kv=1 says this one is KV v1 (which keeps no versions)');
  }
}

function decode(part: string, what: string): string {
  let out: string;
  try {
    out = decodeURIComponent(part);
  } catch {
    throw invalid(`${what} has a malformed %-escape`);
  }
  if (CONTROL.test(out)) throw invalid(`${what} must not contain control characters`);
  return out;
}

function labelOf(u: VaultUri): string {
  const query = [u.version !== undefined ? `version=${u.version}` : '', u.kv !== undefined ? `kv=${u.kv}` : '']
    .filter(Boolean)
    .join('&');
  const field = u.field !== undefined ? `#${encodeURIComponent(u.field)}` : '';
  return `${PREFIX}${u.segments.map(encodeURIComponent).join('/')}${query ? `?${query}` : ''}${field}`;
}

function invalid(message: string): BrokerError {
  return new BrokerError('CONFIG_INVALID', message);
}
