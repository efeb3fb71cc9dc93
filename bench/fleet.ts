// A rotation drill across a simulated fleet, read from telemetry alone: N built daemons
// ("laptops", each with its own HOME, config and socket) read one profile from a fake Vault
// (KV v1, so what identifies a key is its fingerprint under the organisation's salt) with a short
// TTL, each with a simulated Claude Code session calling its helper every TTL/2, and all export to
// one local OTLP receiver. The key is rotated; later it is rotated again and every session gets a
// 401 at once (a storm: it asks again immediately, as Claude Code does). What the receiver got
// answers: how long until every daemon served the new fingerprint, how many reads the store saw
// per minute before, during and after, and what the storm added. The fake Vault's own request
// count is printed beside the telemetry's as a check.
//
//   npm run bench:fleet [-- --daemons 20 --ttl 20s --steady 25s --sessions-per-laptop 3]
//
// Keys are never printed; each key's fingerprint is computed here from the salt, as an
// administrator would for the key being revoked (docs/telemetry.md).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sendRequest } from '../src/client/client.js';
import { parseDuration } from '../src/duration.js';
import type { ConsumerInfo, GetRequest } from '../src/protocol/messages.js';
import { FakeOtlpReceiver, metricPointsOf, type MetricPoint } from '../test/fakes/fake-otlp-receiver.js';
import { FakeVault } from '../test/fakes/fake-vault.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(HERE, '..', 'src', 'cli', 'main.js');
const SALT = `fleet-drill-salt-${randomBytes(8).toString('hex')}`;
const SECRET_PATH = 'kv/anthropic';

const { values } = parseArgs({
  options: {
    daemons: { type: 'string', default: '20' },
    ttl: { type: 'string', default: '20s' },
    steady: { type: 'string', default: '25s' },
    'sessions-per-laptop': { type: 'string', default: '3' },
  },
});
const N = Number(values.daemons);
const durationOf = (name: string, text: string): number => {
  const parsed = parseDuration(text);
  if (!parsed.ok) throw new Error(`--${name}: ${parsed.reason}`);
  return parsed.ms;
};
const TTL_MS = durationOf('ttl', values.ttl);
const STEADY_MS = durationOf('steady', values.steady);
const STORM_SESSIONS = Number(values['sessions-per-laptop']);
if (!Number.isInteger(N) || N < 1) throw new Error('--daemons takes a whole number >= 1');
if (!Number.isInteger(STORM_SESSIONS) || STORM_SESSIONS < 1)
  throw new Error('--sessions-per-laptop takes a whole number >= 1');
const HELPER_TTL_MS = Math.round(TTL_MS / 2);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const keyOf = (round: number): string => `sk-fleet-${round}-${randomBytes(16).toString('hex')}`;
const fingerprintOf = (key: string): string =>
  createHmac('sha256', createHash('sha256').update(SALT, 'utf8').digest()).update(key).digest('hex').slice(0, 12);

interface Laptop {
  index: number;
  socket: string;
  proc: ChildProcess;
}

const dir = fs.mkdtempSync(path.join('/tmp', 'kb-fleet-'));
fs.chmodSync(dir, 0o700);
const laptops: Laptop[] = [];

async function startLaptop(index: number, vault: FakeVault, receiver: string, token: string): Promise<Laptop> {
  const home = path.join(dir, `l${index}`);
  fs.mkdirSync(home, { mode: 0o700 });
  const config = path.join(home, 'config.yaml');
  fs.writeFileSync(
    config,
    [
      'telemetry:',
      `  endpoint: ${receiver}`,
      '  interval: 1s',
      `  salt: ${SALT}`,
      'vault:',
      `  address: ${vault.url}`,
      'profiles:',
      '  org:',
      `    source: vault://${SECRET_PATH}#api_key`,
      `    ttl: ${TTL_MS / 1000}s`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const socket = path.join(home, 'sock', 'kb.sock');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    KEYBROKER_CONFIG: config,
    KEYBROKER_SOCKET: socket,
    XDG_RUNTIME_DIR: path.join(home, 'run'),
    XDG_STATE_HOME: path.join(home, 'state'),
    VAULT_TOKEN: token,
    OTEL_BLRP_SCHEDULE_DELAY: '500',
  };
  const proc = spawn(process.execPath, [CLI, 'daemon', '--log-level', 'warn'], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const laptop = { index, socket, proc };
  laptops.push(laptop);
  for (let i = 0; i < 400; i++) {
    if ((await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 500 })).ok) return laptop;
    await sleep(50);
  }
  throw new Error(`laptop ${index}: the daemon did not start`);
}

function consumer(laptop: Laptop, session: string): ConsumerInfo {
  return {
    pid: process.pid,
    start: `l${laptop.index}-${session}`,
    name: 'claude',
    claudeCode: true,
    invocation: 'api-key-helper',
    helperTtlMs: HELPER_TTL_MS,
  };
}

async function get(laptop: Laptop, session: string): Promise<boolean> {
  const request: GetRequest = { v: 1, op: 'get', profile: 'org', consumer: consumer(laptop, session) };
  return (await sendRequest(laptop.socket, request, { timeoutMs: 10_000 })).ok;
}

/** A Claude Code session: its helper every TTL/2, from a random phase. */
async function session(laptop: Laptop, stop: { stopped: boolean }): Promise<void> {
  await sleep(Math.random() * HELPER_TTL_MS);
  while (!stop.stopped) {
    await get(laptop, 'main');
    const until = performance.now() + HELPER_TTL_MS;
    while (!stop.stopped && performance.now() < until) await sleep(100);
  }
}

/** What the receiver has been told, per daemon (service.instance.id), parsed once per request. */
class FleetView {
  readonly #receiver: FakeOtlpReceiver;
  #cursor = 0;
  /** Per instance: [receiver time, cumulative fetches] samples. */
  readonly fetches = new Map<string, Array<[number, number]>>();
  /** Per instance and fingerprint: when the receiver first saw it served. */
  readonly firstServed = new Map<string, Map<string, number>>();
  readonly rejections = new Map<string, number>();
  readonly limited = new Map<string, number>();
  bytes = { metrics: 0, logs: 0, metricExports: 0, logExports: 0, logRecords: 0 };

  constructor(receiver: FakeOtlpReceiver) {
    this.#receiver = receiver;
  }

  update(): void {
    const fresh = this.#receiver.requests.slice(this.#cursor);
    this.#cursor += fresh.length;
    for (const r of fresh) {
      if (r.path === '/v1/logs') {
        this.bytes.logs += Buffer.byteLength(r.body);
        this.bytes.logExports++;
        this.bytes.logRecords += (r.body.match(/"eventName"/g) ?? []).length;
        continue;
      }
      this.bytes.metrics += Buffer.byteLength(r.body);
      this.bytes.metricExports++;
      for (const p of metricPointsOf(r)) this.#take(p);
    }
  }

  #take(p: MetricPoint): void {
    const id = String(p.resource['service.instance.id']);
    if (p.name === 'keybroker.fetches') {
      const samples = this.fetches.get(id) ?? [];
      samples.push([p.at, p.value]);
      this.fetches.set(id, samples);
    } else if (p.name === 'keybroker.served_version' && typeof p.attributes.fingerprint === 'string') {
      const seen = this.firstServed.get(id) ?? new Map<string, number>();
      if (!seen.has(p.attributes.fingerprint)) seen.set(p.attributes.fingerprint, p.at);
      this.firstServed.set(id, seen);
    } else if (p.name === 'keybroker.rejections') {
      this.rejections.set(id, p.value);
    } else if (p.name === 'keybroker.forced_fetches_limited') {
      this.limited.set(id, p.value);
    }
  }

  get instances(): number {
    return this.fetches.size;
  }

  /** Store reads across the fleet between two receiver times, from each daemon's cumulative counter. */
  readsBetween(from: number, to: number): number {
    let total = 0;
    for (const samples of this.fetches.values()) total += valueAt(samples, to) - valueAt(samples, from);
    return total;
  }

  /** When each instance was first seen serving `fingerprint` (undefined: not yet). */
  servedAt(fingerprint: string): Array<number | undefined> {
    return [...this.fetches.keys()].map((id) => this.firstServed.get(id)?.get(fingerprint));
  }

  sum(map: Map<string, number>): number {
    return [...map.values()].reduce((a, b) => a + b, 0);
  }
}

/** The counter's value as last reported at or before `t` (0 before its first report). */
function valueAt(samples: Array<[number, number]>, t: number): number {
  let v = 0;
  for (const [at, value] of samples) if (at <= t) v = value;
  return v;
}

async function waitUntil(view: FleetView, check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    view.update();
    if (check()) return;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const perMin = (reads: number, ms: number): string => (ms > 0 ? ((reads * 60_000) / ms).toFixed(1) : '-');

async function main(): Promise<void> {
  const started = performance.now();
  const vault = await FakeVault.start();
  vault.enableKv('kv', 1);
  const token = vault.createToken({ read: [SECRET_PATH] });
  const receiver = new FakeOtlpReceiver();
  const receiverUrl = await receiver.listen();
  const view = new FleetView(receiver);
  const stop = { stopped: false };
  const sessions: Array<Promise<void>> = [];
  try {
    const key0 = keyOf(0);
    vault.put(SECRET_PATH, { api_key: key0 });
    // A few at a time: twenty Node processes starting at once on two cores take longer in all.
    for (let i = 0; i < N; i += 4)
      await Promise.all(
        Array.from({ length: Math.min(4, N - i) }, (_, j) => startLaptop(i + j, vault, receiverUrl, token)),
      );
    for (const l of laptops) sessions.push(session(l, stop));
    await waitUntil(
      view,
      () => view.instances === N && view.servedAt(fingerprintOf(key0)).every((t) => t !== undefined),
      TTL_MS + 30_000,
      'every daemon to report the first key',
    );
    const startupS = (performance.now() - started) / 1000;
    console.log(
      `${N} daemons (${os.cpus().length} CPUs), TTL ${s(TTL_MS)} (refresh-ahead at 75% ±5%), helper every ${s(HELPER_TTL_MS)}, metrics every 1 s; up in ${startupS.toFixed(0)} s`,
    );

    // Before: steady state.
    const vaultBefore = vault.count({ path: SECRET_PATH });
    const beforeFrom = Date.now();
    await sleep(STEADY_MS);
    view.update();
    const beforeTo = Date.now();
    const vaultAtRotation = vault.count({ path: SECRET_PATH });

    // During: rotate, until every daemon has served the new fingerprint.
    const key1 = keyOf(1);
    vault.put(SECRET_PATH, { api_key: key1 });
    const rotatedAt = Date.now();
    await waitUntil(
      view,
      () => view.servedAt(fingerprintOf(key1)).every((t) => t !== undefined),
      2 * TTL_MS + HELPER_TTL_MS + 10_000,
      'every daemon to serve the new fingerprint',
    );
    const converged = view.servedAt(fingerprintOf(key1)).map((t) => t! - rotatedAt);
    const convergedAt = rotatedAt + Math.max(...converged);
    const vaultAtConverged = vault.count({ path: SECRET_PATH });
    const stillOld = (t: number): number =>
      view.servedAt(fingerprintOf(key1)).filter((x) => x === undefined || x > t).length;

    // After: steady state again.
    await sleep(STEADY_MS);
    view.update();
    const afterTo = Date.now();
    const vaultAfter = vault.count({ path: SECRET_PATH });

    // The storm: rotate again and, at once, every session on every laptop gets a 401 for the key it
    // holds and asks again immediately.
    stop.stopped = true;
    await Promise.all(sessions);
    await sleep(1500);
    view.update();
    const rejectionsBefore = view.sum(view.rejections);
    const limitedBefore = view.sum(view.limited);
    const stormSessions = Array.from({ length: STORM_SESSIONS }, (_, i) => `storm-${i}`);
    const stormQuietFrom = Date.now();
    const vaultStormStart = vault.count({ path: SECRET_PATH });
    // Each session holds the key (served from the cache, no read) ...
    await Promise.all(laptops.flatMap((l) => stormSessions.map((name) => get(l, name))));
    const key2 = keyOf(2);
    vault.put(SECRET_PATH, { api_key: key2 });
    // ... which is rotated and revoked: every session's next request gets a 401, and it asks again.
    const stormAt = Date.now();
    await Promise.all(laptops.flatMap((l) => stormSessions.map((name) => get(l, name))));
    const stormCalls = Date.now() - stormAt;
    await waitUntil(
      view,
      () => view.servedAt(fingerprintOf(key2)).every((t) => t !== undefined),
      20_000,
      'every daemon to serve the storm key',
    );
    const stormConverged = Math.max(...view.servedAt(fingerprintOf(key2)).map((t) => t! - stormAt));
    await sleep(2500);
    view.update();
    const stormTo = Date.now();
    const vaultStormEnd = vault.count({ path: SECRET_PATH });

    const readsBefore = view.readsBetween(beforeFrom, beforeTo);
    const readsDuring = view.readsBetween(rotatedAt, convergedAt);
    const readsAfter = view.readsBetween(convergedAt, afterTo);
    const readsStorm = view.readsBetween(stormQuietFrom, stormTo);
    const rejections = view.sum(view.rejections) - rejectionsBefore;
    const limited = view.sum(view.limited) - limitedBefore;
    const sorted = [...converged].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    console.log('');
    console.log('from telemetry alone:');
    console.log(
      `  rotation: every daemon served the new fingerprint after ${s(Math.max(...converged))} (median ${s(median)}, first ${s(sorted[0]!)}); ` +
        `still on the old one at +${s(HELPER_TTL_MS)}: ${stillOld(rotatedAt + HELPER_TTL_MS)} of ${N}`,
    );
    console.log(
      `  store reads/min: before ${perMin(readsBefore, beforeTo - beforeFrom)}, during ${perMin(readsDuring, convergedAt - rotatedAt)}, after ${perMin(readsAfter, afterTo - convergedAt)} ` +
        `(expected steady: ${perMin(N, 0.75 * TTL_MS)})`,
    );
    console.log(
      `  401 storm (${N} laptops x ${STORM_SESSIONS} sessions, ${N * STORM_SESSIONS} rejected at once, calls took ${s(stormCalls)}): ` +
        `${readsStorm} store reads, ${rejections} rejections, ${limited} forced fetches limited; every daemon on the new key after ${s(stormConverged)}`,
    );
    console.log(
      `  telemetry volume: ${view.bytes.metricExports} metric exports, ${Math.round(view.bytes.metrics / view.bytes.metricExports)} B each; ` +
        `${view.bytes.logRecords} audit records in ${view.bytes.logExports} exports, ${Math.round(view.bytes.logs / Math.max(1, view.bytes.logRecords))} B per record`,
    );
    console.log(
      `check, the fake Vault's own count of reads: before ${vaultAtRotation - vaultBefore}, during ${vaultAtConverged - vaultAtRotation}, after ${vaultAfter - vaultAtConverged}, storm ${vaultStormEnd - vaultStormStart}`,
    );
    console.log(
      JSON.stringify({
        daemons: N,
        ttlMs: TTL_MS,
        helperTtlMs: HELPER_TTL_MS,
        convergedMs: converged.map(Math.round),
        readsPerMin: {
          before: Number(perMin(readsBefore, beforeTo - beforeFrom)),
          during: Number(perMin(readsDuring, convergedAt - rotatedAt)),
          after: Number(perMin(readsAfter, afterTo - convergedAt)),
        },
        storm: { sessions: N * STORM_SESSIONS, reads: readsStorm, rejections, limited, convergedMs: stormConverged },
        vaultReads: {
          before: vaultAtRotation - vaultBefore,
          during: vaultAtConverged - vaultAtRotation,
          after: vaultAfter - vaultAtConverged,
          storm: vaultStormEnd - vaultStormStart,
        },
        bytes: view.bytes,
        totalS: Math.round((performance.now() - started) / 1000),
      }),
    );
  } finally {
    stop.stopped = true;
    for (const l of laptops) l.proc.kill('SIGTERM');
    await Promise.all(
      laptops.map((l) => new Promise((r) => (l.proc.exitCode !== null ? r(undefined) : l.proc.on('exit', r)))),
    );
    await receiver.close();
    await vault.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
