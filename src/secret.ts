// SecretValue keeps a secret's bytes where a log line, JSON.stringify, util.inspect, a template
// string or an error message cannot reach them. Only the reply writer calls reveal().
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * `bytes` without one trailing newline (\n or \r\n), as a view of the same memory: what `echo KEY >`
 * and `echo KEY |` add to a key that is one line.
 */
export function withoutTrailingNewline(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  return bytes.subarray(0, end);
}

export class SecretValue {
  readonly #bytes: Buffer;

  private constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  static fromString(value: string): SecretValue {
    return new SecretValue(Buffer.from(value, 'utf8'));
  }

  /** Copies the bytes, so the caller may wipe its buffer. */
  static fromBytes(bytes: Uint8Array): SecretValue {
    return new SecretValue(Buffer.from(bytes));
  }

  get byteLength(): number {
    return this.#bytes.length;
  }

  /** True when the bytes are valid UTF-8 text (a key must be). */
  isText(): boolean {
    return isUtf8(this.#bytes);
  }

  /** How many lines the value spans (\n, \r\n or a lone \r ends a line); a key is one. */
  lineCount(): number {
    let lines = 1;
    const b = this.#bytes;
    for (let i = 0; i < b.length; i++) {
      if (b[i] === 0x0a || (b[i] === 0x0d && b[i + 1] !== 0x0a)) lines++;
    }
    return lines;
  }

  /** The secret as text. Call only where it is written to its consumer. */
  reveal(): string {
    return this.#bytes.toString('utf8');
  }

  /**
   * Hand the bytes to a parser that reads non-secret facts out of the value (a JWT's `exp`),
   * without a copy of them leaving this object. `read` must not keep, log or throw them.
   */
  peek<T>(read: (bytes: Uint8Array) => T): T {
    return read(this.#bytes);
  }

  /** Constant-time comparison, for telling a rotated value from an unchanged one. */
  equals(other: SecretValue): boolean {
    const a = this.#bytes;
    const b = other.#bytes;
    if (a.length !== b.length) return false;
    return timingSafeEqual(a, b);
  }

  /**
   * A short non-reversible tag that identifies a value across fetches in logs
   * ("did it change?") without disclosing it. Salted per process.
   */
  tag(): string {
    return createHash('sha256').update(TAG_SALT).update(this.#bytes).digest('hex').slice(0, 8);
  }

  /**
   * HMAC-SHA256 under `key`, first `hexChars` hex digits: tells values apart in a record that
   * outlives the process (the audit trail), yet without the key nobody can check a guessed value
   * against it — an unkeyed hash of a key would confirm a guess.
   */
  keyedFingerprint(key: Uint8Array, hexChars = 12): string {
    return createHmac('sha256', key).update(this.#bytes).digest('hex').slice(0, hexChars);
  }

  /** What ServedValues keeps instead of the value: its byte length and a salted hash. */
  redactionKey(): { length: number; hash: string } {
    return { length: this.#bytes.length, hash: hashBytes(this.#bytes) };
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `SecretValue(${REDACTED})`;
  }
}

const TAG_SALT = randomBytes(16);

// ---- redaction of text that came from a child process or a backend ----

const MASK = '[masked]';
/** Values shorter than this are not searched for: a 3-character value would mask half the text. */
const MIN_REDACTED_BYTES = 6;
/** Longer values cannot fit in a one-line error; they are still covered by the shape rules. */
const MAX_REDACTED_BYTES = 4096;
/** Text is cut to this many bytes before it is searched (an error line is far shorter). */
const MAX_SCANNED_BYTES = 4096;

const KEY_SHAPES: RegExp[] = [
  // Anthropic keys, whatever follows the prefix.
  /sk-ant-[A-Za-z0-9_-]+/g,
  // Vault service/batch/recovery tokens (hvs., hvb., hvr. and the pre-1.10 s./b./r. forms) and UUIDs.
  /\b(?:hv[sbr]|[sbr])\.[A-Za-z0-9_-]{20,}/g,
  /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi,
];
/** A long run of base64/hex characters; masked when it also looks random (see below). */
const LONG_RUN = /[A-Za-z0-9+/=_-]{32,}/g;

/**
 * Values the daemon has served, remembered only as salted hashes by length, so that text from a
 * child or a backend can be searched for them without keeping a copy of any value (`forget` and
 * expiry must really drop it from memory).
 */
export class ServedValues {
  readonly #byLength = new Map<number, Set<string>>();
  readonly #order: Array<{ length: number; hash: string }> = [];
  readonly #max: number;

  constructor(maxValues = 256) {
    this.#max = maxValues;
  }

  add(value: SecretValue): void {
    if (value.byteLength < MIN_REDACTED_BYTES || value.byteLength > MAX_REDACTED_BYTES) return;
    const { length, hash } = value.redactionKey();
    let set = this.#byLength.get(length);
    if (!set) this.#byLength.set(length, (set = new Set()));
    if (set.has(hash)) return;
    set.add(hash);
    this.#order.push({ length, hash });
    while (this.#order.length > this.#max) {
      const old = this.#order.shift()!;
      this.#byLength.get(old.length)?.delete(old.hash);
    }
  }

  /** Byte ranges of `text` equal to a served value. */
  find(text: Buffer): Array<[number, number]> {
    const ranges: Array<[number, number]> = [];
    const lengths = [...this.#byLength.entries()]
      .filter(([, set]) => set.size > 0)
      .map(([length]) => length)
      .sort((a, b) => b - a);
    for (const length of lengths) {
      const set = this.#byLength.get(length)!;
      for (let i = 0; i + length <= text.length; i++) {
        if (ranges.some(([s, e]) => i < e && i + length > s)) continue;
        if (set.has(hashBytes(text.subarray(i, i + length)))) {
          ranges.push([i, i + length]);
          i += length - 1;
        }
      }
    }
    return ranges.sort((a, b) => a[0] - b[0]);
  }
}

const VALUE_SALT = randomBytes(16);
function hashBytes(bytes: Uint8Array): string {
  return createHash('sha256').update(VALUE_SALT).update(bytes).digest('base64');
}

/**
 * The one redaction for text that a child process or a backend wrote and keybroker puts into an
 * error, status line or log: every value the daemon has served (`served`, any profile) becomes
 * "[redacted]", and key-shaped strings ("sk-ant-…", Vault tokens, UUIDs, long random-looking
 * base64/hex runs of 32+ characters) become "[masked]".
 */
export function redactText(text: string, served?: ServedValues): string {
  let out = text;
  if (served) {
    const bytes = Buffer.from(out, 'utf8').subarray(0, MAX_SCANNED_BYTES);
    const ranges = served.find(bytes);
    if (ranges.length > 0) {
      const parts: string[] = [];
      let at = 0;
      for (const [s, e] of ranges) {
        parts.push(bytes.subarray(at, s).toString('utf8'), REDACTED);
        at = e;
      }
      parts.push(bytes.subarray(at).toString('utf8'));
      out = parts.join('');
    }
  }
  for (const shape of KEY_SHAPES) out = out.replace(shape, MASK);
  return out.replace(LONG_RUN, (run) => (looksRandom(run) ? MASK : run));
}

/**
 * Hex, or mixed case with digits, and not an absolute path (a socket or config path can be a
 * long run of these characters, and is worth keeping in a message).
 */
function looksRandom(run: string): boolean {
  if (run.startsWith('/')) return false;
  if (/^[0-9a-f]+$/i.test(run) && /[0-9]/.test(run)) return true;
  return /[0-9]/.test(run) && /[a-z]/.test(run) && /[A-Z]/.test(run);
}
