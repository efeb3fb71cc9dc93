// KV secrets engine logic, following the `vault kv` CLI (command/kv_helpers.go):
// - the engine version comes from GET /v1/sys/internal/ui/mounts/<path>: data.options.version
//   "2" means KV v2, anything else (or no options) KV v1, and a 404 from that endpoint means a
//   Vault too old to have it, so KV v1;
// - data.path is the mount, which may span several segments (team/kv/) and, under a namespace,
//   start with the namespace path; KV v2 reads insert data/ right after the mount;
// - KV v2 answers GET <mount>/data/<path>[?version=N] with data.data and data.metadata.version;
//   KV v1 answers GET <mount>/<path> with data, and a lease_duration that is advisory (the
//   mount's default TTL, or the secret's own `ttl` key).
import { BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';

export interface KvLocation {
  version: 1 | 2;
  /** Decoded mount segments, e.g. ["team", "kv"]. */
  mount: string[];
  /** Decoded segments below the mount. */
  rest: string[];
}

export interface KvSecret {
  data: Record<string, unknown>;
  /** KV v2 metadata.version. */
  version?: number;
  leaseSeconds: number;
}

/** A value bigger than this is not an API key. */
export const MAX_VALUE_BYTES = 64 * 1024;
const MAX_LISTED_KEYS = 20;

export function preflightPath(segments: string[]): string {
  return `sys/internal/ui/mounts/${encodePath(segments)}`;
}

/** Interpret a preflight answer the way the CLI's kvPreflightVersionRequest does. */
export function locateFromPreflight(body: unknown, segments: string[]): KvLocation {
  const data = (body as { data?: { path?: unknown; options?: unknown } } | undefined)?.data;
  const mountPath = typeof data?.path === 'string' ? data.path : '';
  const options = data?.options;
  const raw = options && typeof options === 'object' ? (options as { version?: unknown }).version : undefined;
  const version: 1 | 2 = raw === '2' ? 2 : 1;
  return { version, ...splitAtMount(segments, mountPath) };
}

/** The location when the URI names the engine version (?kv=) and no preflight is made. */
export function locateByOverride(segments: string[], version: 1 | 2): KvLocation {
  return { version, mount: segments.slice(0, 1), rest: segments.slice(1) };
}

/**
 * Split a path at its mount. Port of the CLI's addPrefixToKVPath: when the mount path reported
 * by Vault carries a namespace prefix the URI does not, leading segments of the mount path are
 * dropped until it matches.
 */
export function splitAtMount(segments: string[], mountPath: string): { mount: string[]; rest: string[] } {
  let mount = mountPath.split('/').filter(Boolean);
  while (mount.length > 0) {
    if (mount.length <= segments.length && mount.every((s, i) => s === segments[i])) {
      return { mount, rest: segments.slice(mount.length) };
    }
    mount = mount.slice(1);
  }
  // Vault gave no usable mount path (an old server): take the first segment, as the URI says.
  return { mount: segments.slice(0, 1), rest: segments.slice(1) };
}

/** The API path to read, percent-encoded per segment, without the /v1/ prefix. */
export function kvReadPath(loc: KvLocation, version: number | undefined): string {
  if (loc.version === 2) {
    return `${encodePath(loc.mount)}/data/${encodePath(loc.rest)}${version !== undefined ? `?version=${version}` : ''}`;
  }
  return encodePath([...loc.mount, ...loc.rest]);
}

export function kvLabel(loc: KvLocation): string {
  return [...loc.mount, ...loc.rest].join('/');
}

/** Take the secret out of a KV read answer; anything else is a wrong address or engine. */
export function extractSecret(body: unknown, loc: KvLocation, label: string): KvSecret {
  const envelope = body as { data?: unknown; lease_duration?: unknown } | undefined;
  const lease =
    typeof envelope?.lease_duration === 'number' && envelope.lease_duration > 0 ? envelope.lease_duration : 0;
  const outer = envelope?.data;
  if (loc.version === 2) {
    const inner = (outer as { data?: unknown; metadata?: { version?: unknown } } | undefined) ?? undefined;
    if (!isRecord(inner) || !isRecord(inner.data)) {
      throw new BrokerError('SOURCE_ERROR', `${label}: Vault's answer has no data.data`, {
        fix: 'is this a KV v2 engine? (if it is KV v1, add ?kv=1)',
      });
    }
    const version = typeof inner.metadata?.version === 'number' ? inner.metadata.version : undefined;
    return version === undefined
      ? { data: inner.data, leaseSeconds: lease }
      : { data: inner.data, version, leaseSeconds: lease };
  }
  if (!isRecord(outer))
    throw new BrokerError('SOURCE_ERROR', `${label}: Vault's answer has no data`, { fix: 'is this a KV engine?' });
  return { data: outer, leaseSeconds: lease };
}

/**
 * The value of `field`, or of the secret's only key when no field is named. KV v1's `ttl` key
 * is Vault's own (it sets the advisory lease), so it does not count as the secret's one key.
 */
export function selectField(secret: KvSecret, field: string | undefined, loc: KvLocation, label: string): SecretValue {
  const keys = Object.keys(secret.data);
  let name = field;
  if (name === undefined) {
    const candidates = loc.version === 1 ? keys.filter((k) => k !== 'ttl') : keys;
    if (candidates.length === 0) throw new BrokerError('NOT_FOUND', `${label} has no fields`);
    if (candidates.length > 1) {
      throw new BrokerError(
        'CONFIG_INVALID',
        `${label} has ${candidates.length} fields (${listKeys(candidates)}): name one in the source URI, e.g. vault://${label}#${encodeURIComponent(candidates[0]!)}`,
      );
    }
    name = candidates[0]!;
  } else if (!Object.prototype.hasOwnProperty.call(secret.data, name)) {
    throw new BrokerError(
      'NOT_FOUND',
      `${label} has no field "${printable(name)}"; its fields: ${keys.length > 0 ? listKeys(keys) : '(none)'}`,
    );
  }
  const value = secret.data[name];
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
  else
    throw new BrokerError(
      'INVALID_VALUE',
      `field "${printable(name)}" of ${label} holds ${value === null ? 'null' : Array.isArray(value) ? 'a list' : 'an object'}, not text`,
    );
  if (Buffer.byteLength(text, 'utf8') > MAX_VALUE_BYTES) {
    throw new BrokerError(
      'INVALID_VALUE',
      `field "${printable(name)}" of ${label} is larger than ${MAX_VALUE_BYTES} bytes; a key is expected`,
    );
  }
  return SecretValue.fromString(text);
}

function encodePath(segments: string[]): string {
  return segments.map(encodeURIComponent).join('/');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Field names, never values, bounded for a one-line message. */
function listKeys(keys: string[]): string {
  const shown = keys.slice(0, MAX_LISTED_KEYS).map(printable);
  return keys.length > MAX_LISTED_KEYS
    ? `${shown.join(', ')}, … ${keys.length - MAX_LISTED_KEYS} more`
    : shown.join(', ');
}

function printable(name: string): string {
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 64 ? `${clean.slice(0, 64)}…` : clean;
}
