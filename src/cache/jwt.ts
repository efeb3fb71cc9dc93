// A value that is a JWT (RFC 7519, JWS compact serialisation: three base64url parts, a JSON header
// with `alg`) carries its own expiry. This reads its header and claims for the times only. It
// never verifies the signature (keybroker is not the token's audience: the API that receives it
// verifies it) and never turns the signature into a string; nothing read here is logged.

/** Times a JWT states, in epoch milliseconds. */
export interface JwtTimes {
  /** `exp`: the token must not be accepted at or after this instant. */
  expiresAt?: number;
  /** `iat`, else `nbf`: when its validity began, to size the refresh margin. */
  issuedAt?: number;
}

/** A value longer than this is not decoded (an API token is a few kilobytes at most). */
export const MAX_JWT_BYTES = 64 * 1024;
/** The largest instant a Date can hold; an `exp` past it is as good as none. */
const MAX_DATE_MS = 8.64e15;
const DOT = 0x2e;

/**
 * The times of a JWT value, `{}` for a JWT without usable ones, or undefined when the value is
 * not a JWT at all (an API key, a JSON document, a JWE). Never throws.
 */
export function readJwtTimes(bytes: Uint8Array): JwtTimes | undefined {
  if (bytes.length < 5 || bytes.length > MAX_JWT_BYTES) return undefined;
  const first = bytes.indexOf(DOT);
  const second = first < 0 ? -1 : bytes.indexOf(DOT, first + 1);
  if (first <= 0 || second <= first + 1 || bytes.indexOf(DOT, second + 1) >= 0) return undefined;
  // The signature may be empty (alg "none"), but must be base64url like the rest.
  if (!isBase64Url(bytes, 0, bytes.length, [first, second])) return undefined;
  const header = decodeJsonPart(bytes.subarray(0, first));
  if (!isPlainObject(header) || typeof header.alg !== 'string' || header.alg === '') return undefined;
  const claims = decodeJsonPart(bytes.subarray(first + 1, second));
  if (!isPlainObject(claims)) return undefined;
  const times: JwtTimes = {};
  const exp = numericDate(claims.exp);
  if (exp !== undefined) times.expiresAt = exp;
  const start = numericDate(claims.iat) ?? numericDate(claims.nbf);
  if (start !== undefined) times.issuedAt = start;
  return times;
}

function isBase64Url(bytes: Uint8Array, from: number, to: number, dots: number[]): boolean {
  for (let i = from; i < to; i++) {
    const c = bytes[i]!;
    const ok =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x5f ||
      dots.includes(i);
    if (!ok) return false;
  }
  return true;
}

/** A header or claims part: base64url of a JSON object. Parse errors are swallowed (they quote input). */
function decodeJsonPart(part: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(Buffer.from(part).toString('latin1'), 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A NumericDate (seconds since the epoch, a JSON number) as milliseconds; undefined if unusable. */
function numericDate(v: unknown): number | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v)) return undefined;
  const ms = v * 1000;
  return Math.abs(ms) <= MAX_DATE_MS ? ms : undefined;
}
