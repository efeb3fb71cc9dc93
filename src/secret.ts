// SecretValue keeps a secret's bytes where a log line, JSON.stringify, util.inspect, a template
// string or an error message cannot reach them. Only the reply writer calls reveal().
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

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

  /** The secret as text. Call only where it is written to its consumer. */
  reveal(): string {
    return this.#bytes.toString('utf8');
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
