// The OS keychain, reached through @napi-rs/keyring (keyring-rs) on a worker thread.
//
// Why a worker: on Linux the library connects to the session bus and opens a Secret Service
// session synchronously when an entry is made — 10–30 ms normally, 2 s when the service hangs —
// and an unlock or access prompt can keep a call waiting for a person. On the daemon's own thread
// that would stall every client. On the worker it stalls only keychain calls, which go one at a
// time, each bounded by its caller's signal; a call stuck longer than `stuckMs` makes the next ones
// fail at once instead of queueing behind it. The worker is started on first use and stopped when
// idle, and the library is loaded only inside it: a daemon without keyring profiles never loads it.
//
// On Linux every entry is pinned to the Secret Service: the library would otherwise fall back to
// the kernel's keyutils store when no Secret Service answers, which forgets everything at reboot.
//
// Values cross threads as transferred buffers (moved, not copied) and are zeroed by the side that
// is done with them. The library's error text is classified here; it reaches only the debug log.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../src/adapter.js';
import { redactText } from '../../src/secret.js';

export type KeychainOp = 'get' | 'set' | 'delete' | 'probe';

/**
 * The worker stops after this long without a call: a daemon with keyring: profiles then holds no
 * thread and no heap for them between refreshes (which come minutes apart).
 */
export const KEYCHAIN_WORKER_IDLE_MS = 10_000;

/** Why a keychain call failed, as data; keychain-errors.ts turns it into a message and a code. */
export type KeychainFailure =
  /** @napi-rs/keyring is not installed, or has no build for this platform. */
  | 'no-library'
  /** No D-Bus session bus to connect to (Linux). */
  | 'no-bus'
  /** A session bus, but nothing on it provides org.freedesktop.secrets (Linux). */
  | 'no-service'
  /** The keychain service did not answer in time, or an earlier call is still stuck. */
  | 'no-answer'
  /** Locked, or access refused (a dismissed unlock prompt, macOS access denied). */
  | 'locked'
  /** More than one entry matches the service and account. */
  | 'ambiguous'
  | 'failed';

export type KeychainResult =
  { ok: true; found: boolean; secret?: Uint8Array } | { ok: false; failure: KeychainFailure; stuckForMs?: number };

export interface KeychainCall {
  op: KeychainOp;
  service: string;
  account: string;
  /** For 'set': the value's bytes, transferred to the worker (the caller's buffer is emptied). */
  secret?: Uint8Array;
  signal: AbortSignal;
}

export interface KeychainWorkerOptions {
  log: Logger;
  /** Stop the worker after this long without a call. */
  idleMs?: number;
  /** A call running this long makes later calls fail at once with 'no-answer'. */
  stuckMs?: number;
  /** Calls waiting behind the running one, at most; more fail at once. */
  maxQueued?: number;
  /** Where the library is (tests); default: resolved from this package. */
  library?: string;
}

interface WorkerRequest {
  id: number;
  op: KeychainOp;
  service: string;
  account: string;
  secret?: Uint8Array;
}

type WorkerReply =
  | { id: number; ok: true; found: boolean; secret?: Uint8Array }
  | { id: number; ok: false; failure: string; library?: boolean };

// Plain CommonJS, evaluated as the worker's script: the daemon runs bundled, so a worker file
// beside this module would not be found by a path relative to it.
const WORKER_SOURCE = `'use strict';
const { parentPort, workerData } = require('node:worker_threads');
let lib;
let loadError = '';
try {
  lib = require(workerData.library);
} catch (err) {
  loadError = String((err && err.code) || 'load failed');
}
const options = { linux: { store: 'secret-service' } };
parentPort.on('message', (m) => {
  let reply;
  try {
    if (!lib) {
      reply = { id: m.id, ok: false, failure: 'library: ' + loadError, library: true };
    } else {
      const entry = new lib.Entry(m.service, m.account, options);
      if (m.op === 'get' || m.op === 'probe') {
        const found = entry.getSecret();
        if (found == null) reply = { id: m.id, ok: true, found: false };
        else {
          const secret = m.op === 'get' ? Uint8Array.from(found) : undefined;
          found.fill(0);
          reply = secret ? { id: m.id, ok: true, found: true, secret } : { id: m.id, ok: true, found: true };
        }
      } else if (m.op === 'set') {
        entry.setSecret(m.secret);
        reply = { id: m.id, ok: true, found: true };
      } else {
        reply = { id: m.id, ok: true, found: entry.deleteCredential() };
      }
    }
  } catch (err) {
    reply = { id: m.id, ok: false, failure: String((err && err.message) || err).slice(0, 400) };
  } finally {
    if (m.secret) m.secret.fill(0);
  }
  parentPort.postMessage(reply, reply.secret ? [reply.secret.buffer] : []);
});
`;

interface Pending {
  request: WorkerRequest;
  signal: AbortSignal;
  resolve(result: KeychainResult): void;
  reject(reason: unknown): void;
  onAbort(): void;
  startedAt?: number;
}

export class KeychainWorker {
  readonly #log: Logger;
  readonly #idleMs: number;
  readonly #stuckMs: number;
  readonly #maxQueued: number;
  readonly #library: string | undefined;
  #worker: Worker | undefined;
  #running: Pending | undefined;
  readonly #queue: Pending[] = [];
  #idleTimer: NodeJS.Timeout | undefined;
  #nextId = 0;
  #closed = false;

  constructor(options: KeychainWorkerOptions) {
    this.#log = options.log;
    this.#idleMs = options.idleMs ?? KEYCHAIN_WORKER_IDLE_MS;
    this.#stuckMs = options.stuckMs ?? 20_000;
    this.#maxQueued = options.maxQueued ?? 32;
    this.#library = options.library;
  }

  /** Run one call. Resolves with what the keychain said; rejects only with the signal's reason. */
  run(call: KeychainCall): Promise<KeychainResult> {
    const secret = call.secret;
    const wipe = (): void => void secret?.fill(0);
    if (call.signal.aborted) {
      wipe();
      return Promise.reject(call.signal.reason);
    }
    if (this.#closed) {
      wipe();
      return Promise.resolve({ ok: false, failure: 'no-answer' });
    }
    const running = this.#running;
    if (running?.startedAt !== undefined && performance.now() - running.startedAt >= this.#stuckMs) {
      wipe();
      return Promise.resolve({
        ok: false,
        failure: 'no-answer',
        stuckForMs: Math.round(performance.now() - running.startedAt),
      });
    }
    if (this.#queue.length >= this.#maxQueued) {
      wipe();
      return Promise.resolve({ ok: false, failure: 'no-answer' });
    }
    return new Promise<KeychainResult>((resolve, reject) => {
      const request: WorkerRequest = { id: ++this.#nextId, op: call.op, service: call.service, account: call.account };
      if (secret) request.secret = secret;
      const pending: Pending = {
        request,
        signal: call.signal,
        resolve,
        reject,
        onAbort: () => {
          const queued = this.#queue.indexOf(pending);
          if (queued >= 0) {
            this.#queue.splice(queued, 1);
            wipe();
          }
          // A running call cannot be taken back from the worker: its answer, when it comes, is
          // dropped (and a value in it wiped).
          reject(call.signal.reason);
        },
      };
      call.signal.addEventListener('abort', pending.onAbort, { once: true });
      this.#queue.push(pending);
      clearTimeout(this.#idleTimer);
      this.#next();
    });
  }

  /** Stop the worker; calls waiting or running get 'no-answer'. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    for (const p of [...(this.#running ? [this.#running] : []), ...this.#queue.splice(0)]) {
      p.request.secret?.fill(0);
      this.#settle(p, { ok: false, failure: 'no-answer' });
    }
    this.#running = undefined;
    this.#stopWorker();
  }

  #next(): void {
    if (this.#running || this.#closed) return;
    const pending = this.#queue.shift();
    if (!pending) {
      this.#idleTimer = setTimeout(() => this.#stopWorker(), this.#idleMs);
      this.#idleTimer.unref();
      return;
    }
    let worker: Worker;
    try {
      worker = this.#ensureWorker();
    } catch {
      this.#settle(pending, { ok: false, failure: 'no-library' });
      pending.request.secret?.fill(0);
      this.#next();
      return;
    }
    this.#running = pending;
    pending.startedAt = performance.now();
    const { secret } = pending.request;
    worker.postMessage(pending.request, secret ? [secret.buffer as ArrayBuffer] : []);
  }

  #ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const library = this.#library ?? createRequire(import.meta.url).resolve('@napi-rs/keyring');
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { library },
      // The worker needs the library and a few buffers, nothing more.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
      stdout: true,
      stderr: true,
    });
    // Never keeps the process alive, and says nothing on the daemon's stdout or stderr.
    worker.unref();
    worker.stdout.resume();
    worker.stderr.resume();
    worker.on('message', (reply: WorkerReply) => this.#onReply(worker, reply));
    worker.on('error', () => this.#onWorkerGone(worker, 'failed'));
    worker.on('exit', () => this.#onWorkerGone(worker, 'no-answer'));
    this.#worker = worker;
    this.#log.debug('keychain worker started');
    return worker;
  }

  #onReply(worker: Worker, reply: WorkerReply): void {
    const pending = this.#running;
    if (worker !== this.#worker || !pending || pending.request.id !== reply.id) {
      if (reply.ok) reply.secret?.fill(0);
      return;
    }
    this.#running = undefined;
    const result: KeychainResult = reply.ok
      ? { ok: true, found: reply.found, ...(reply.secret && { secret: reply.secret }) }
      : { ok: false, failure: reply.library ? 'no-library' : classifyKeychainFailure(reply.failure) };
    // The library's words go to the debug log only, redacted like any backend text.
    if (!reply.ok)
      this.#log.debug(
        { op: pending.request.op, failure: result.ok ? undefined : result.failure, detail: redactText(reply.failure) },
        'keychain call failed',
      );
    if (!this.#settle(pending, result) && result.ok) result.secret?.fill(0);
    this.#next();
  }

  #onWorkerGone(worker: Worker, failure: KeychainFailure): void {
    if (worker !== this.#worker) return;
    this.#worker = undefined;
    const pending = this.#running;
    this.#running = undefined;
    if (pending) this.#settle(pending, { ok: false, failure });
    this.#next();
  }

  /** Hand a result to its caller; false when the caller had already given up. */
  #settle(pending: Pending, result: KeychainResult): boolean {
    pending.signal.removeEventListener('abort', pending.onAbort);
    if (pending.signal.aborted) return false;
    pending.resolve(result);
    return true;
  }

  #stopWorker(): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#worker = undefined;
    // Not awaited: a thread inside a native call finishes that call first.
    void worker.terminate().catch(() => {});
    this.#log.debug('keychain worker stopped');
  }
}

/**
 * What the library's error text means. Its wording is keyring-rs's and libdbus's (checked against
 * @napi-rs/keyring 2.1: "Platform failure: DBus error: …", "Couldn't access platform storage: …",
 * "Entry is matched by N credentials …").
 */
export function classifyKeychainFailure(text: string): KeychainFailure {
  if (/^Couldn't access platform (secure )?storage/i.test(text)) return 'locked';
  if (/Entry is matched by/i.test(text)) return 'ambiguous';
  if (/not provided by any \.service files|ServiceUnknown|NameHasNoOwner|No DBus session or Secret Service/i.test(text))
    return 'no-service';
  if (
    /autolaunch|DBUS_SESSION_BUS_ADDRESS|Failed to connect to socket|Connection refused|No such file or directory/i.test(
      text,
    )
  )
    return 'no-bus';
  if (/Did not receive a reply|NoReply|Timeout|timed out/i.test(text)) return 'no-answer';
  return 'failed';
}
