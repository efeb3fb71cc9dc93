// keyring: — the OS keychain: the macOS login keychain, or on Linux the Secret Service on your
// session bus (GNOME Keyring, KWallet, KeePassXC).
//
//   profiles:
//     default:
//       source: keyring:default            # service "keybroker", account "default":
//                                          #   keybroker key set default
//     openai:
//       source: keyring://openai/ada       # an entry another tool wrote: secret-tool store
//                                          #   --label=… service openai username ada
//
// Options: none. The daemon reaches the keychain from its own session: on Linux through the bus in
// DBUS_SESSION_BUS_ADDRESS (else $XDG_RUNTIME_DIR/bus), and only the Secret Service there — never
// the kernel keyutils store, which forgets at reboot; on macOS through the login keychain, which
// asks before it lets a program other than the one that wrote an entry read it.
// A locked keyring is AUTH_REQUIRED, no bus or no Secret Service UNAVAILABLE, a missing entry
// NOT_FOUND. One trailing newline is trimmed (`echo KEY | secret-tool store …` keeps one).
// This is also a source you can write to: `keybroker key set` / `key delete` use store() and remove().
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Adapter, AdapterInit, FetchResult, ProbeResult, WriteContext } from '../../src/adapter.js';
import { SecretValue, withoutTrailingNewline } from '../../src/secret.js';
import { notFoundError, translateKeychainFailure } from './keychain-errors.js';
import { classifyKeychainFailure, KeychainWorker, type KeychainResult } from './keychain-worker.js';
import { KEYBROKER_SERVICE, parseKeyringUri, type KeyringRef } from './keyring-uri.js';

export function createAdapter(init: AdapterInit): Adapter<KeyringRef> {
  const worker = new KeychainWorker({ log: init.log });
  const platform = process.platform;
  const failed = (
    result: Extract<KeychainResult, { ok: false }>,
    ref: KeyringRef,
    ctx: WriteContext,
    action: 'read' | 'store' | 'remove',
  ) =>
    translateKeychainFailure(result.failure, {
      ref,
      profile: ctx.profile,
      platform,
      action,
      stuckForMs: result.stuckForMs,
    });
  return {
    kind: 'keyring',
    parse: (uri) => parseKeyringUri(uri),
    describe: (ref) => ref.label,
    // Behind the keychain's service, not in a file: an agent's sandbox keeps it out by refusing
    // the connection (the session bus is a Unix socket), not by a path it could deny.
    secretLocations: () => ({ files: [], env: [], keychain: true }),
    async fetch(ref, ctx): Promise<FetchResult> {
      const result = await worker.run({ op: 'get', service: ref.service, account: ref.account, signal: ctx.signal });
      if (!result.ok) throw failed(result, ref, ctx, 'read');
      if (!result.found || !result.secret) throw notFoundError({ ref, profile: ctx.profile, platform });
      const bytes = result.secret;
      const value = SecretValue.fromBytes(withoutTrailingNewline(bytes));
      bytes.fill(0);
      return { value };
    },
    async store(ref, value, ctx): Promise<void> {
      // A buffer of its own, moved to the worker and wiped there.
      const secret = value.peek((b) => Uint8Array.from(b));
      const result = await worker.run({
        op: 'set',
        service: ref.service,
        account: ref.account,
        secret,
        signal: ctx.signal,
      });
      if (!result.ok) throw failed(result, ref, ctx, 'store');
    },
    async remove(ref, ctx): Promise<boolean> {
      const result = await worker.run({ op: 'delete', service: ref.service, account: ref.account, signal: ctx.signal });
      if (!result.ok) throw failed(result, ref, ctx, 'remove');
      return result.found;
    },
    close: () => worker.close(),
  };
}

// The probe runs in a child process, so that the daemon that asks loads no keychain library
// unless it comes to use one, and a keychain that hangs is killed on time.
const PROBE_SOURCE = `'use strict';
try {
  const lib = require(process.argv[1]);
  const entry = new lib.Entry(process.argv[2], '.probe', { linux: { store: 'secret-service' } });
  const found = entry.getSecret();
  if (found) found.fill(0);
  process.stdout.write('ok\\n');
} catch (err) {
  process.stdout.write('failed ' + String((err && err.message) || err).slice(0, 400) + '\\n');
}
`;

/**
 * Does a real keychain answer here? macOS: the login keychain answers a lookup. Linux: a Secret
 * Service answers on the session bus (not the kernel keyutils store). Bounded by `timeoutMs`.
 */
export async function probe(options: { env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<ProbeResult> {
  const { env } = options;
  const platform = process.platform;
  if (platform !== 'darwin' && platform !== 'linux' && platform !== 'freebsd')
    return { ok: false, why: `no keychain support on ${platform} yet` };
  if (platform !== 'darwin' && !env.DBUS_SESSION_BUS_ADDRESS) {
    // libdbus's own fallback when the variable is unset; without either there is no bus to ask.
    const runtimeBus = env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'bus') : undefined;
    if (!runtimeBus || !fs.existsSync(runtimeBus)) return { ok: false, why: 'no D-Bus session bus' };
  }
  let library: string;
  try {
    library = createRequire(import.meta.url).resolve('@napi-rs/keyring');
  } catch {
    return { ok: false, why: 'the keychain library (@napi-rs/keyring) is not installed' };
  }
  const answer = await runProbe(library, env, options.timeoutMs);
  if (answer === undefined) return { ok: false, why: `the keychain did not answer within ${options.timeoutMs} ms` };
  if (answer === 'ok')
    return { ok: true, what: platform === 'darwin' ? 'the login keychain' : 'the Secret Service on your session bus' };
  const failure = classifyKeychainFailure(answer.replace(/^failed /, ''));
  const why: Record<string, string> = {
    'no-bus': 'no D-Bus session bus',
    'no-service': 'no Secret Service on the session bus',
    'no-answer': 'the Secret Service did not answer',
    locked: 'the keychain is locked or refused access',
    'no-library': 'the keychain library could not be loaded',
  };
  return { ok: false, why: why[failure] ?? 'the keychain reported an error' };
}

/** The probe child's one line of output ('ok' or 'failed …'), or undefined when it ran out of time. */
function runProbe(library: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', PROBE_SOURCE, library, KEYBROKER_SERVICE], {
      env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      if (out.length < 1024) out += chunk;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', () => {
      clearTimeout(timer);
      resolve('failed spawn');
    });
    child.on('close', () => {
      clearTimeout(timer);
      resolve(timedOut ? undefined : out.split('\n')[0] || 'failed without a word');
    });
  });
}
