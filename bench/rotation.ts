// What a key rotation at the source looks like on every laptop of a managed rollout: two built
// daemons ("laptops", each with its own HOME, config and socket) share one managed config whose
// profile reads one file: source. The key is rotated at a random moment, several times, and the
// script measures how long until each daemon serves the new key (its next refresh-ahead), how
// long until a Claude Code session re-running its helper every TTL/2 (what `setup claude` sets)
// has it, and how long the 401 path takes (the session asks again at once after a rejection).
//
//   npm run build && node dist/bench/rotation.js [--ttl 20s] [--rounds 4]
//
// The managed config is trusted only when root owns it: run as root (CI does); otherwise each
// laptop's own config gets the profile and the script says so. Keys are printed as their round
// number only.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/duration.js';
import { sendRequest } from '../src/client/client.js';
import type { ConsumerInfo, GetRequest, Reply } from '../src/protocol/messages.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(HERE, '..', 'src', 'cli', 'main.js');

const { values } = parseArgs({
  options: { ttl: { type: 'string', default: '20s' }, rounds: { type: 'string', default: '4' } },
});
const ttl = parseDuration(values.ttl);
if (!ttl.ok) throw new Error(`--ttl: ${ttl.reason}`);
const TTL_MS = ttl.ms;
const HELPER_TTL_MS = Math.round(TTL_MS / 2);
const ROUNDS = Number(values.rounds);
const isRoot = process.getuid?.() === 0;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const keyOf = (round: number): string => `sk-rotation-bench-${round}-${'x'.repeat(24)}`;

interface Laptop {
  name: string;
  socket: string;
  proc: ChildProcess;
}

const started: Laptop[] = [];
const dir = fs.mkdtempSync(path.join('/tmp', 'kb-rot-'));
fs.chmodSync(dir, 0o700);
const keyFile = path.join(dir, 'org-key');
const profile = `  org:\n    source: file:${keyFile}\n    ttl: ${TTL_MS / 1000}s\n`;
const managedDir = path.join(dir, 'etc-keybroker');
fs.mkdirSync(managedDir, { mode: 0o755 });
fs.chmodSync(managedDir, 0o755);
const managedFile = path.join(managedDir, 'managed.yaml');
fs.writeFileSync(managedFile, `profiles:\n${profile}locked: [defaults.maxStale]\n`, { mode: 0o644 });

function rotate(round: number): number {
  fs.writeFileSync(`${keyFile}.tmp`, `${keyOf(round)}\n`, { mode: 0o600 });
  fs.renameSync(`${keyFile}.tmp`, keyFile);
  return performance.now();
}

async function get(socket: string, consumer?: ConsumerInfo): Promise<string | undefined> {
  const request: GetRequest = { v: 1, op: 'get', profile: 'org', ...(consumer && { consumer }) };
  const reply: Reply = await sendRequest(socket, request, { timeoutMs: 10_000 });
  return reply.ok && 'value' in reply ? reply.value : undefined;
}

async function startLaptop(name: string): Promise<Laptop> {
  const home = path.join(dir, name);
  fs.mkdirSync(home, { mode: 0o700 });
  fs.writeFileSync(path.join(home, 'config.yaml'), isRoot ? 'profiles: {}\n' : `profiles:\n${profile}`, {
    mode: 0o600,
  });
  const socket = path.join(home, 'sock', 'kb.sock');
  const env = {
    ...process.env,
    HOME: home,
    KEYBROKER_CONFIG: path.join(home, 'config.yaml'),
    KEYBROKER_SOCKET: socket,
    KEYBROKER_MANAGED_CONFIG: managedFile,
    XDG_RUNTIME_DIR: path.join(home, 'run'),
  };
  const proc = spawn(process.execPath, [CLI, 'daemon', '--log-level', 'warn'], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 200; i++) {
    if ((await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 500 })).ok) {
      started.push({ name, socket, proc });
      return started.at(-1)!;
    }
    await sleep(50);
  }
  throw new Error(`laptop ${name}: the daemon did not start`);
}

/** A Claude Code session: asks every helper TTL, from a random phase; records when it first saw each key. */
function session(laptop: Laptop, seen: Map<string, number>, stop: { stopped: boolean }): Promise<void> {
  const consumer: ConsumerInfo = {
    pid: process.pid,
    start: `session-${laptop.name}`,
    name: 'claude',
    claudeCode: true,
    invocation: 'api-key-helper',
    helperTtlMs: HELPER_TTL_MS,
  };
  return (async () => {
    await sleep(Math.random() * HELPER_TTL_MS);
    while (!stop.stopped) {
      const value = await get(laptop.socket, consumer);
      if (value !== undefined && !seen.has(value)) seen.set(value, performance.now());
      await sleep(HELPER_TTL_MS);
    }
  })();
}

const fmt = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

async function main(): Promise<void> {
  rotate(0);
  const laptops = [await startLaptop('A'), await startLaptop('B')];
  const sessionsSeen = laptops.map(() => new Map<string, number>());
  const stop = { stopped: false };
  const sessions = laptops.map((l, i) => session(l, sessionsSeen[i]!, stop));
  for (const l of laptops) await get(l.socket);
  console.log(
    `TTL ${fmt(TTL_MS)}, helper TTL ${fmt(HELPER_TTL_MS)} (CLAUDE_CODE_API_KEY_HELPER_TTL_MS), refresh-ahead at 75% ±5% of the TTL, ${isRoot ? 'profile from the managed config' : 'NOT root: profile in each laptop config (managed config untrusted)'}`,
  );
  console.log('round  daemon A  daemon B  session A  session B');
  const rows: number[][] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    await sleep(Math.random() * TTL_MS);
    const key = keyOf(round);
    const t0 = rotate(round);
    const daemonMs = laptops.map(() => NaN);
    while (daemonMs.some(Number.isNaN) || sessionsSeen.some((s) => !s.has(key))) {
      for (const [i, l] of laptops.entries())
        if (Number.isNaN(daemonMs[i]) && (await get(l.socket)) === key) daemonMs[i] = performance.now() - t0;
      if (performance.now() - t0 > 3 * TTL_MS) throw new Error(`round ${round}: not picked up within 3 TTLs`);
      await sleep(50);
    }
    const sessionMs = sessionsSeen.map((s) => s.get(key)! - t0);
    rows.push([...daemonMs, ...sessionMs]);
    console.log(
      `${String(round).padEnd(5)}  ${rows
        .at(-1)!
        .map((ms) => fmt(ms).padStart(8))
        .join('  ')}`,
    );
  }
  stop.stopped = true;
  await Promise.all(sessions);

  // The 401 path: a session holding the old key asks again at once (Claude Code does after a
  // 401); the daemon refetches from the source instead of serving its cache.
  const rejected: number[] = [];
  for (const [i, l] of laptops.entries()) {
    const consumer: ConsumerInfo = {
      pid: process.pid,
      start: `rejected-${l.name}`,
      name: 'claude',
      claudeCode: true,
      invocation: 'api-key-helper',
      helperTtlMs: HELPER_TTL_MS,
    };
    const before = await get(l.socket, consumer);
    const key = keyOf(ROUNDS + 1 + i);
    const t0 = rotate(ROUNDS + 1 + i);
    const after = await get(l.socket, consumer);
    rejected.push(performance.now() - t0);
    if (after !== key || before === key)
      throw new Error(`laptop ${l.name}: the repeat after a rejection did not get the new key`);
  }
  const daemonMax = Math.max(...rows.flatMap((r) => r.slice(0, 2)));
  const sessionMax = Math.max(...rows.flatMap((r) => r.slice(2)));
  console.log(
    `slowest: daemon ${fmt(daemonMax)} (bound: 80% of the TTL = ${fmt(0.8 * TTL_MS)}), session ${fmt(sessionMax)} (bound: that + the helper TTL = ${fmt(0.8 * TTL_MS + HELPER_TTL_MS)})`,
  );
  console.log(
    `after a 401: new key served in ${rejected.map((ms) => `${Math.round(ms)} ms`).join(' and ')} (laptops A and B)`,
  );
  console.log(
    JSON.stringify({
      ttlMs: TTL_MS,
      helperTtlMs: HELPER_TTL_MS,
      managed: isRoot,
      rounds: rows.map((r) => r.map(Math.round)),
      daemonMaxMs: Math.round(daemonMax),
      sessionMaxMs: Math.round(sessionMax),
      rejectedMs: rejected.map(Math.round),
    }),
  );
}

try {
  await main();
} finally {
  for (const l of started) l.proc.kill('SIGTERM');
  await Promise.all(
    started.map((l) => new Promise((r) => (l.proc.exitCode !== null ? r(undefined) : l.proc.on('exit', r)))),
  );
  fs.rmSync(dir, { recursive: true, force: true });
}
