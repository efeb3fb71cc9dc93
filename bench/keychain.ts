// The keychain source in the bench: a keyring: profile's first fetch and a refresh, beside
// `secret-tool lookup` of the same entry in the same run (the floor: a program that does one
// Secret Service lookup and exits), and the daemon's memory with a keyring: profile. Runs against a
// private Secret Service (bench/secret-service.ts); where none can be started it says why and the
// bench goes on without these rows.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { KEYCHAIN_WORKER_IDLE_MS } from '../adapters/keyring/keychain-worker.js';
import { FORCED_FETCH_BURST } from '../src/cache/forced-fetch-limit.js';
import { sendRequest } from '../src/client/client.js';
import { readMemory } from './process-usage.js';
import { secretServiceMissing, startSecretService, type SecretService } from './secret-service.js';
import { summarize, type Summary } from './stats.js';

/** A daemon the bench started, for a config given as text, with the bus address in its environment. */
export interface BenchDaemon {
  pid: number;
  socket: string;
  stop(): Promise<unknown>;
}

export type LaunchDaemon = (name: string, config: string, env: NodeJS.ProcessEnv) => Promise<BenchDaemon>;

export interface KeychainFigures {
  /** A fresh daemon's first get: the worker starts, loads the library, connects to the bus. */
  firstFetchMs: Summary;
  /** forget, then get: one keychain read with the worker running. */
  refreshMs: Summary;
  /** The same after the worker stopped for being idle (what a refresh-ahead usually meets). */
  idleRefreshMs: number;
  /** secret-tool lookup of the same entry: spawn, connect, look up, exit. */
  lookupMs: Summary;
  rssKiB: {
    /** Started, nothing fetched yet. */
    started: number;
    /** Right after the reads, the keychain worker running. */
    workerRunning: number;
    /** Fetched, then idle until the worker stopped: how a daemon with a keyring: profile sits. */
    idle: number;
  };
}

const PROFILE = 'bench';
const FIRST_FETCH_RUNS = 5;

async function get(socket: string, key: string, profile = PROFILE): Promise<number> {
  const started = performance.now();
  const reply = await sendRequest(socket, { v: 1, op: 'get', profile }, { timeoutMs: 30_000 });
  const ms = performance.now() - started;
  if (!reply.ok) throw new Error(`keyring get failed: ${reply.error.code}: ${reply.error.message}`);
  // Compared, never shown.
  if (!('value' in reply) || reply.value !== key) throw new Error('the keyring get did not return the stored key');
  return ms;
}

async function lookup(ss: SecretService, key: string): Promise<number> {
  const started = performance.now();
  const out = await ss.secretTool(['lookup', 'service', 'keybroker', 'username', PROFILE]);
  const ms = performance.now() - started;
  if (out.code !== 0 || out.stdout !== key) throw new Error(`secret-tool lookup failed (exit ${out.code})`);
  return ms;
}

function rss(pid: number): number {
  const memory = readMemory(pid);
  if (!memory) throw new Error("could not read the keyring daemon's memory");
  return memory.rssKiB;
}

/** The keychain figures, or why they could not be measured here. */
export async function benchKeychain(
  dir: string,
  options: { runs: number; audit: boolean },
  launch: LaunchDaemon,
): Promise<KeychainFigures | { skipped: string }> {
  const { runs } = options;
  const missing = secretServiceMissing();
  if (missing) return { skipped: missing };
  let ss: SecretService;
  try {
    ss = await startSecretService(path.join(dir, 'secret-service'));
  } catch (err) {
    return { skipped: `could not start a Secret Service: ${(err as Error).message.split('\n')[0]}` };
  }
  try {
    const key = `kb-bench-${randomBytes(24).toString('base64url')}`;
    const stored = await ss.secretTool(
      ['store', '--label=keybroker bench', 'service', 'keybroker', 'username', PROFILE],
      key,
    );
    if (stored.code !== 0) return { skipped: `secret-tool store failed (exit ${stored.code})` };
    // Like the file: daemon's config but for the source, so their memory compares.
    const config = `${options.audit ? '' : 'audit: false\n'}profiles:\n  ${PROFILE}:\n    source: keyring:${PROFILE}\n`;
    const first: number[] = [];
    let daemon: BenchDaemon | undefined;
    let started = 0;
    for (let i = 0; i < FIRST_FETCH_RUNS; i++) {
      await daemon?.stop();
      daemon = await launch('the keyring daemon', config, ss.env);
      if (i === 0) started = rss(daemon.pid);
      first.push(await get(daemon.socket, key));
    }
    // A forget's refetch takes a token from the profile's forced-fetch budget (FORCED_FETCH_BURST
    // back to back, then one per 10 s): the refreshes go round profiles that all read the same
    // entry, so each stays within its burst and the figure is the keychain's, not the limit's.
    const rounds = Array.from({ length: Math.ceil(runs / FORCED_FETCH_BURST) }, (_, i) => `${PROFILE}-r${i}`);
    await daemon?.stop();
    const d = await launch(
      'the keyring daemon (refreshes)',
      config + rounds.map((name) => `  ${name}:\n    source: keyring://keybroker/${PROFILE}\n`).join(''),
      ss.env,
    );
    await get(d.socket, key);
    const refresh: number[] = [];
    const lookups: number[] = [];
    // Interleaved, so a neighbour's burst of work weighs on both alike.
    for (let i = 0; i < runs; i++) {
      const profile = rounds[i % rounds.length]!;
      const forgot = await sendRequest(d.socket, { v: 1, op: 'forget', profile }, { timeoutMs: 10_000 });
      if (!forgot.ok) throw new Error(`forget failed: ${forgot.error.code}`);
      refresh.push(await get(d.socket, key, profile));
      lookups.push(await lookup(ss, key));
    }
    const workerRunning = rss(d.pid);
    await new Promise((r) => setTimeout(r, KEYCHAIN_WORKER_IDLE_MS + 1_000));
    const idle = rss(d.pid);
    await sendRequest(d.socket, { v: 1, op: 'forget', profile: PROFILE }, { timeoutMs: 10_000 });
    const idleRefreshMs = await get(d.socket, key);
    await d.stop();
    return {
      firstFetchMs: summarize(first),
      refreshMs: summarize(refresh),
      idleRefreshMs,
      lookupMs: summarize(lookups),
      rssKiB: { started, workerRunning, idle },
    };
  } finally {
    await ss.stop();
  }
}
