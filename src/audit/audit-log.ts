// The audit trail's writer. A get must never wait for, or fail because of, the trail: record() only
// appends a line to a bounded in-memory buffer, and a timer appends the buffer to the file — every
// 250 ms, or at once when 4096 records are waiting — so a burst of 20,000 gets a second costs about
// five writes, not 20,000. A full buffer or a failed write loses records, and says how many in
// status; it never throws into the request.
//
// The file and its directory are private: the directory is created 0700 and refused when it is a
// symlink, someone else's or open to others; the file is opened O_NOFOLLOW, created 0600, and
// refused unless it is a regular file of ours that nobody else can read. Past maxFileBytes it is
// renamed to audit.jsonl.1 (one previous file kept) and a new one started.
//
// Versions: the source's version label where it has one (Vault KV version, Secrets Manager
// VersionId), else HMAC-SHA256 of the value under a random per-install salt (audit.salt, 0600,
// beside the file), 12 hex digits: equal values give equal fingerprints, and without the salt a
// fingerprint cannot confirm a guessed key. With `telemetry.salt` the organisation's salt replaces
// it, so fingerprints compare across laptops; each record also goes to a listener (the export).
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { readPrivateFile, type Logger } from '../adapter.js';
import { ensurePrivateDir } from '../private-dir.js';
import { BrokerError } from '../errors.js';
import { formatMode } from '../client/file-mode.js';
import type { AuditStatus } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';
import { AUDIT_FILE, AUDIT_PREVIOUS_FILE, AUDIT_SALT_FILE, type AuditRecord, type KeyVersion } from './audit-record.js';

const SALT_BYTES = 32;

export interface AuditLogOptions {
  /** The private state directory that holds the trail and its salt. */
  dir: string;
  log: Logger;
  now?: () => number;
  enabled?: boolean;
  /** Append the buffer at least this often while it holds records. */
  flushIntervalMs?: number;
  /** Append at once when this many records are waiting. */
  flushRecords?: number;
  /** Records beyond this many waiting are dropped (and counted). */
  maxBufferedRecords?: number;
  /** Rotate once the file would grow past this. */
  maxFileBytes?: number;
}

/** A served (or rejected) value, turned into a version by the log. */
export interface ServedKey {
  value: SecretValue;
  version: string | undefined;
}

/** A record as the daemon hands it over: values instead of versions, time filled in here. */
export type AuditEvent = Omit<AuditRecord, 'time' | 'version' | 'fingerprint' | 'rejected'> & {
  served?: ServedKey | undefined;
  rejected?: ServedKey | undefined;
};

export class AuditLog {
  readonly file: string;
  readonly #dir: string;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #flushIntervalMs: number;
  readonly #flushRecords: number;
  readonly #maxBuffered: number;
  readonly #maxFileBytes: number;
  #enabled: boolean;
  /** This installation's salt (audit.salt), and the organisation's (telemetry.salt) that overrides it. */
  #localSalt: Buffer | undefined;
  #orgSalt: Buffer | undefined;
  /** Gets each record as it is made, whether or not the trail is on (the telemetry export). */
  #listener: ((record: AuditRecord) => void) | undefined;
  #buffer: string[] = [];
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #written = 0;
  #writes = 0;
  #dropped = 0;
  #lastError: AuditStatus['lastError'] = null;
  /** Fingerprints per value object: a cached value is fingerprinted once, not once per get. */
  #fingerprints = new WeakMap<SecretValue, string>();

  constructor(options: AuditLogOptions) {
    if (!path.isAbsolute(options.dir))
      throw new BrokerError('INTERNAL', `audit directory must be absolute (got ${options.dir})`);
    this.#dir = options.dir;
    this.file = path.join(options.dir, AUDIT_FILE);
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#enabled = options.enabled ?? true;
    this.#flushIntervalMs = options.flushIntervalMs ?? 250;
    this.#flushRecords = options.flushRecords ?? 4096;
    this.#maxBuffered = options.maxBufferedRecords ?? 16_384;
    this.#maxFileBytes = options.maxFileBytes ?? 8 * 1024 * 1024;
  }

  /**
   * Make the directory and load (or create) the salt. A problem here is reported in status and
   * the log; the daemon serves on, counting the records it cannot keep.
   */
  async open(): Promise<void> {
    if (!this.#wanted || this.#localSalt) return;
    try {
      this.#localSalt = await loadAuditSalt(this.#dir);
      this.#lastError = null;
    } catch (err) {
      this.#fail(err, 'cannot open the audit trail');
    }
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** Records are made for the trail, or for a listener. */
  get #wanted(): boolean {
    return this.#enabled || this.#listener !== undefined;
  }

  get #salt(): Buffer | undefined {
    return this.#orgSalt ?? this.#localSalt;
  }

  /** Hand every record to `listener` too (undefined: stop). */
  async setListener(listener: ((record: AuditRecord) => void) | undefined): Promise<void> {
    this.#listener = listener;
    await this.open();
  }

  /**
   * Fingerprint under the organisation's salt (`telemetry.salt`), so fingerprints compare across
   * laptops; undefined: this installation's own again.
   */
  useOrgSalt(salt: Buffer | undefined): void {
    if (salt === this.#orgSalt || (salt && this.#orgSalt?.equals(salt))) return;
    this.#orgSalt = salt;
    this.#fingerprints = new WeakMap();
  }

  /** Fingerprints are made under the organisation's salt. */
  get orgSalt(): boolean {
    return this.#orgSalt !== undefined;
  }

  /** `audit: false` in a reloaded config stops recording (what is buffered is still written). */
  async setEnabled(enabled: boolean): Promise<void> {
    if (enabled === this.#enabled) return;
    this.#enabled = enabled;
    if (enabled) await this.open();
    else await this.flush();
  }

  /** Queue one record. Never throws, never waits. */
  record(event: AuditEvent): void {
    if (!this.#wanted) return;
    if (!this.#salt || (!this.#listener && this.#buffer.length >= this.#maxBuffered)) {
      if (this.#enabled) this.#dropped++;
      return;
    }
    const { served, rejected, ...rest } = event;
    const made: AuditRecord = {
      time: new Date(this.#now()).toISOString(),
      ...rest,
      ...(served && this.#versionOf(served)),
    };
    if (rejected) made.rejected = this.#versionOf(rejected);
    const record = orderKeys(made);
    this.#listener?.(record);
    if (!this.#enabled) return;
    if (this.#buffer.length >= this.#maxBuffered) {
      this.#dropped++;
      return;
    }
    this.#buffer.push(JSON.stringify(record));
    this.#schedule();
  }

  status(): AuditStatus {
    return {
      enabled: this.#enabled,
      file: this.file,
      written: this.#written,
      writes: this.#writes,
      dropped: this.#dropped,
      lastError: this.#lastError,
    };
  }

  /** Write everything buffered now (at shutdown, and in tests). */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#writing) await this.#writing;
    if (this.#buffer.length > 0) await this.#drain();
  }

  async close(): Promise<void> {
    await this.flush();
  }

  #versionOf(key: ServedKey): KeyVersion {
    if (key.version !== undefined) return { version: key.version };
    let fingerprint = this.#fingerprints.get(key.value);
    if (fingerprint === undefined) {
      fingerprint = key.value.keyedFingerprint(this.#salt!);
      this.#fingerprints.set(key.value, fingerprint);
    }
    return { fingerprint };
  }

  #schedule(): void {
    if (this.#writing) return; // the write in progress schedules the next one
    const full = this.#buffer.length >= this.#flushRecords;
    if (this.#timer && !full) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        void this.#drain();
      },
      full ? 0 : this.#flushIntervalMs,
    );
    this.#timer.unref();
  }

  #drain(): Promise<void> {
    const batch = this.#buffer;
    this.#buffer = [];
    this.#writing = (async () => {
      try {
        await this.#append(`${batch.join('\n')}\n`);
        this.#written += batch.length;
        this.#writes++;
        if (this.#lastError) this.#log.info({ file: this.file }, 'audit trail writable again');
        this.#lastError = null;
      } catch (err) {
        this.#dropped += batch.length;
        this.#fail(err, 'cannot write the audit trail');
      }
    })();
    return this.#writing.finally(() => {
      this.#writing = undefined;
      if (this.#buffer.length > 0) this.#schedule();
    });
  }

  async #append(text: string): Promise<void> {
    const data = Buffer.from(text, 'utf8');
    let handle = await this.#openFile();
    try {
      const size = (await handle.stat()).size;
      if (size > 0 && size + data.length > this.#maxFileBytes) {
        await handle.close();
        await fs.rename(this.file, path.join(this.#dir, AUDIT_PREVIOUS_FILE));
        handle = await this.#openFile();
      }
      await handle.write(data);
    } finally {
      await handle.close();
    }
  }

  async #openFile(): Promise<fs.FileHandle> {
    // O_NONBLOCK: a FIFO in the file's place would otherwise block the open until a reader came,
    // forever — and shutdown, which flushes the trail, with it. Without a reader it fails ENXIO.
    const flags =
      fsConstants.O_WRONLY |
      fsConstants.O_APPEND |
      fsConstants.O_CREAT |
      fsConstants.O_NOFOLLOW |
      fsConstants.O_NONBLOCK;
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(this.file, flags, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENXIO')
        throw new BrokerError('UNSAFE_PATH', `${this.file} is not a regular file`);
      throw err;
    }
    try {
      checkPrivate(await handle.stat(), this.file);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle;
  }

  #fail(err: unknown, what: string): void {
    const code = err instanceof BrokerError ? err.code : ((err as NodeJS.ErrnoException).code ?? 'INTERNAL');
    const message = err instanceof BrokerError ? err.message : `${what}: ${code} (${this.file})`;
    const repeated = this.#lastError?.code === code;
    this.#lastError = { code, message, atMs: this.#now() };
    if (err instanceof BrokerError && err.fix !== undefined) this.#lastError.fix = err.fix;
    // One warning per kind of failure, not one per flush while the disk stays full.
    if (!repeated)
      this.#log.warn({ file: this.file, code, dropped: this.#dropped }, `${what}: records are being dropped`);
  }
}

/** The audit file must be a regular file of ours that nobody else can read or write. */
export function checkPrivate(st: { uid: number; mode: number; isFile(): boolean }, file: string): void {
  if (!st.isFile()) throw new BrokerError('UNSAFE_PATH', `${file} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw new BrokerError('UNSAFE_PATH', `${file} is owned by uid ${st.uid}, not by you (uid ${uid})`, {
      fix: 'move it away',
    });
  if ((st.mode & 0o077) !== 0) {
    throw new BrokerError('UNSAFE_PATH', `${file} has mode ${formatMode(st.mode)}: others can read who got which key`, {
      fix: `run: chmod 600 ${file}`,
    });
  }
}

const KEY_ORDER: ReadonlyArray<keyof AuditRecord> = [
  'time',
  'op',
  'profile',
  'chosenBy',
  'directory',
  'cwd',
  'consumer',
  'peer',
  'consumerIs',
  'outcome',
  'error',
  'source',
  'version',
  'fingerprint',
  'rejected',
];

/** Same key order in every line, so the file reads well with grep and less. */
function orderKeys(record: AuditRecord): AuditRecord {
  const out: Record<string, unknown> = {};
  for (const k of KEY_ORDER) if (record[k] !== undefined) out[k] = record[k];
  return out as unknown as AuditRecord;
}

/**
 * The salt of the audit trail's fingerprints in the private state directory `dir` (created 0700
 * if need be), made on first use. `keybroker init` fingerprints a key with it too, so the
 * fingerprint it shows is the one the trail records.
 */
export async function loadAuditSalt(dir: string): Promise<Buffer> {
  await ensurePrivateDir(dir, 'state directory');
  const file = path.join(dir, AUDIT_SALT_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const salt = await readPrivateFile(file, {
        label: `audit salt ${file}`,
        maxBytes: SALT_BYTES,
        invalid: 'UNSAFE_PATH',
      });
      if (salt.length === SALT_BYTES) return salt;
      throw new BrokerError('UNSAFE_PATH', `audit salt ${file} is ${salt.length} bytes, not ${SALT_BYTES}`, {
        fix: 'remove it and a new one is made (older fingerprints then no longer compare)',
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      // O_EXCL: two daemons starting together must not each write their own salt.
      const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
      const handle = await fs.open(file, flags, 0o600);
      try {
        const salt = randomBytes(SALT_BYTES);
        await handle.write(salt);
        return salt;
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new BrokerError('UNSAFE_PATH', `audit salt ${file} could not be created or read`);
}
