// keybroker's benchmark (`npm run bench`): figures measured in one run, each next to a floor
// measured in the same run on the same machine, so a slow or busy machine slows both and the
// ratio still means something. How to read the output: the README's Performance section
// (docs/readme/performance.md).
//
//   node dist/bench/bench.js [--runs N] [--duration S] [--clients N]
//
// It starts a real built daemon on a private temporary socket with a file: profile, and a trivial
// socket server as the throughput floor; then, where a Secret Service can be started, daemons
// with a keyring: profile (bench/keychain.ts). It prints a table and then one JSON line with every
// number. It never prints the key it serves.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { sendRequest } from '../src/client/client.js';
import type { GetRequest, Reply } from '../src/protocol/messages.js';
import { benchKeychain, type KeychainFigures, type LaunchDaemon } from './keychain.js';
import { mergeLoads, runLoad, type LoadResult } from './load.js';
import { hasProcStatus, readCpuMs, readMemory, resetPeak, samplePeaks, type Memory } from './process-usage.js';
import { percentile, round, summarize, type Summary } from './stats.js';

// Resolved from the built file (dist/bench/bench.js), so the bench always measures the build
// that sits next to it, and through package.json's bin, so it measures what users install even
// if the shim's built file changes name or format.
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const CLI = binPath('keybroker', 'dist/src/cli/main.js');
const SHIM = binPath('keybroker-shim', 'dist/src/shim/keybroker-shim.js');
/** The C fast path, where this machine's build compiled it (scripts/build-native.mjs). */
const NATIVE_SHIM = path.join(ROOT, 'dist', 'native', 'keybroker-shim');
/** A trivial C program: the floor of any exec, whatever the program does. */
const TRUE = fs.existsSync('/bin/true') ? '/bin/true' : '/usr/bin/true';
const FLOOR_SERVER = path.join(HERE, 'floor-server.js');

function binPath(name: string, fallback: string): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      bin?: Record<string, string>;
    };
    const bin = pkg.bin?.[name];
    if (typeof bin === 'string' && bin.length > 0) return path.resolve(ROOT, bin);
  } catch {
    // No readable package.json above the build: assume the usual layout.
  }
  return path.resolve(ROOT, fallback);
}

// Node 22 and later start in about half Node 20's time (~23 ms against ~51 ms on a 2-CPU VM), so
// the shim's own few milliseconds weigh twice as much in the ratio: 1.15x on 20, 1.2x from 22.
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const GOALS = {
  shimRatio: NODE_MAJOR >= 22 ? 1.2 : 1.15,
  nativeRatio: 0.2,
  nativeMedianMs: 5,
  throughputRatio: 0.6,
  idleRssMiB: 64,
  peakRssMiB: 128,
} as const;
const PROFILE = 'bench';
/** Runs of every command before the timed ones: page cache, the daemon's code paths, CPU clocks. */
const WARMUP_ROUNDS = 3;
/** Fewer timed runs than this and one slow outlier can move the median. */
const MIN_RUNS = 21;
const DEFAULTS = { runs: 25, durationS: 3, clients: 50 } as const;
/** Each server's load time is cut into this many slices, alternating between the two servers. */
const LOAD_SLICES = 4;

const USAGE = `usage: npm run bench -- [--runs N] [--duration S] [--clients N]

  --runs N       timed runs of each start-up command, interleaved (default ${DEFAULTS.runs}; the goal needs >= ${MIN_RUNS})
  --duration S   seconds of load on each server, daemon and floor (default ${DEFAULTS.durationS})
  --clients N    concurrent connection-per-request clients (default ${DEFAULTS.clients})
  --no-audit     run the daemon with "audit: false" (compare the audit trail's cost)
  --telemetry    export to a local OTLP receiver (telemetry: on, 1 s interval: its cost in RSS)

Prints a table (figure, floor, ratio, goal, pass/miss), then one JSON line with every number.`;

class BenchError extends Error {}

interface Options {
  runs: number;
  durationS: number;
  clients: number;
  audit: boolean;
  telemetry: boolean;
}

function parseOptions(argv: string[]): Options {
  let values: {
    runs?: string;
    duration?: string;
    clients?: string;
    'no-audit'?: boolean;
    telemetry?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        runs: { type: 'string' },
        duration: { type: 'string' },
        clients: { type: 'string' },
        'no-audit': { type: 'boolean' },
        telemetry: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new BenchError(`${(err as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const runs = values.runs === undefined ? DEFAULTS.runs : Number(values.runs);
  const durationS = values.duration === undefined ? DEFAULTS.durationS : Number(values.duration);
  const clients = values.clients === undefined ? DEFAULTS.clients : Number(values.clients);
  if (!Number.isInteger(runs) || runs < 1)
    throw new BenchError(`--runs takes a whole number >= 1 (got ${values.runs})`);
  if (!Number.isFinite(durationS) || durationS <= 0)
    throw new BenchError(`--duration takes a number of seconds > 0 (got ${values.duration})`);
  if (!Number.isInteger(clients) || clients < 1)
    throw new BenchError(`--clients takes a whole number >= 1 (got ${values.clients})`);
  return { runs, durationS, clients, audit: !values['no-audit'], telemetry: Boolean(values.telemetry) };
}

// ---- the workspace: a private directory with the key, the config and both sockets ----

interface Workspace {
  dir: string;
  socket: string;
  floorSocket: string;
  emptyEsm: string;
  key: string;
  env: NodeJS.ProcessEnv;
}

function createWorkspace(audit: boolean, telemetryEndpoint: string | undefined): Workspace {
  // Short base path: a Unix socket path must fit in ~104 bytes.
  const base = fs.existsSync('/tmp') ? '/tmp' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, 'kb-bench-'));
  // The daemon refuses a socket directory that group or others can enter.
  fs.chmodSync(dir, 0o700);
  const key = `kb-bench-${randomBytes(24).toString('base64url')}`;
  const keyFile = path.join(dir, 'key');
  fs.writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(
    config,
    `${audit ? '' : 'audit: false\n'}${telemetryEndpoint ? `telemetry:\n  endpoint: ${telemetryEndpoint}\n  interval: 1s\n` : ''}profiles:\n  ${PROFILE}:\n    source: ${JSON.stringify(`file:${keyFile}`)}\n`,
    { mode: 0o600 },
  );
  const emptyEsm = path.join(dir, 'empty.mjs');
  fs.writeFileSync(emptyEsm, '');
  const socket = path.join(dir, 'kb.sock');
  return { dir, socket, floorSocket: path.join(dir, 'floor.sock'), emptyEsm, key, env: childEnv(dir, socket, config) };
}

/** The environment of every child: nothing from the caller's keybroker or Claude Code session. */
function childEnv(dir: string, socket: string, config: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('CLAUDE_CODE_') || name === 'AI_AGENT' || name.startsWith('KEYBROKER_')) delete env[name];
  }
  return {
    ...env,
    // Whatever goes wrong, nothing lands in the user's real config or state directories.
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_STATE_HOME: path.join(dir, 'state'),
    XDG_RUNTIME_DIR: path.join(dir, 'run'),
    KEYBROKER_SOCKET: socket,
    KEYBROKER_CONFIG: config,
    KEYBROKER_NO_AUTOSTART: '1',
    // `sh -c 'node -e 0'` and the shim's `#!/usr/bin/env node` must find the node running this.
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
  };
}

// ---- servers: the daemon and the floor, each its own process ----

interface Server {
  pid: number;
  socket: string;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

const children = new Set<ChildProcess>();

async function startServer(name: string, args: string[], socket: string, work: Workspace): Promise<Server> {
  const proc = spawn(process.execPath, args, { env: work.env, cwd: work.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  // Kept for the error message if it dies: the daemon's log is redacted, and at warn nearly empty.
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-8192);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      children.delete(proc);
      resolve({ code, signal });
    });
  });
  let gone: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((e) => (gone = e));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const reply = await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 1000 });
    if (reply.ok) break;
    if (gone) throw new BenchError(`${name} exited (${gone.code ?? gone.signal}) before answering:\n${stderr.trim()}`);
    if (Date.now() > deadline)
      throw new BenchError(`${name} did not answer on ${socket} within 10 s:\n${stderr.trim()}`);
    await sleep(25);
  }
  if (proc.pid === undefined) throw new BenchError(`${name} has no pid`);
  return {
    pid: proc.pid,
    socket,
    stop: async () => {
      const sent = performance.now();
      if (!gone) proc.kill('SIGTERM');
      const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const result = await exited;
      clearTimeout(kill);
      return { ...result, ms: performance.now() - sent };
    },
  };
}

// ---- 1. warm start-up: the shim against node itself, interleaved ----

type VariantId = 'shim' | 'node' | 'shimSh' | 'nodeSh' | 'emptyEsm' | 'native' | 'true';

interface Variant {
  id: VariantId;
  label: string;
  command: string;
  args: string[];
  printsKey: boolean;
}

function startupVariants(work: Workspace): Variant[] {
  const quoted = `'${SHIM.replace(/'/g, `'\\''`)}'`;
  // Each shim next to its floor, so in most rounds the two run back to back.
  return [
    {
      id: 'shim',
      label: `node keybroker-shim ${PROFILE}`,
      command: process.execPath,
      args: [SHIM, PROFILE],
      printsKey: true,
    },
    { id: 'node', label: 'node -e 0', command: process.execPath, args: ['-e', '0'], printsKey: false },
    // What Claude Code runs: a shell, then the shim through its #!/usr/bin/env node line.
    {
      id: 'shimSh',
      label: `sh -c 'keybroker-shim ${PROFILE}'`,
      command: '/bin/sh',
      args: ['-c', `${quoted} ${PROFILE}`],
      printsKey: true,
    },
    { id: 'nodeSh', label: `sh -c 'node -e 0'`, command: '/bin/sh', args: ['-c', 'node -e 0'], printsKey: false },
    // Not a goal: shows how much of the shim's margin an ES module entry point alone costs.
    { id: 'emptyEsm', label: 'node empty.mjs', command: process.execPath, args: [work.emptyEsm], printsKey: false },
    // The native fast path, in the same rounds as node -e 0 and the Node shim, next to the cost
    // of exec'ing any C program at all.
    ...(nativeBuilt()
      ? [
          {
            id: 'native' as const,
            label: `native keybroker-shim ${PROFILE}`,
            command: NATIVE_SHIM,
            args: [PROFILE],
            printsKey: true,
          },
          { id: 'true' as const, label: TRUE, command: TRUE, args: [], printsKey: false },
        ]
      : []),
  ];
}

function nativeBuilt(): boolean {
  try {
    fs.accessSync(NATIVE_SHIM, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function checkRun(variant: Variant, out: SpawnSyncReturns<string>, key: string): string | undefined {
  if (out.error) return `could not run: ${out.error.message}`;
  if (out.status !== 0) {
    const line = (out.stderr ?? '').trim().split('\n')[0] ?? '';
    return `exited ${out.status ?? out.signal}${line ? `: ${line}` : ''}`;
  }
  // Compared, never shown.
  if (variant.printsKey && out.stdout !== `${key}\n`) return 'exited 0 but did not print exactly the key and a newline';
  return undefined;
}

/** Wall time of each variant, in rounds; each round starts one variant later so none always goes first. */
function measureStartup(variants: Variant[], runs: number, work: Workspace): Map<VariantId, number[]> {
  const times = new Map<VariantId, number[]>(variants.map((v) => [v.id, []]));
  const n = variants.length;
  for (let round = -WARMUP_ROUNDS; round < runs; round++) {
    const offset = ((round % n) + n) % n;
    for (let i = 0; i < n; i++) {
      const variant = variants[(i + offset) % n]!;
      // spawnSync: the clock stops when the child exits, not when this event loop next looks.
      const started = performance.now();
      const out = spawnSync(variant.command, variant.args, {
        env: work.env,
        cwd: work.dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        encoding: 'utf8',
        timeout: 30_000,
      });
      const ms = performance.now() - started;
      const wrong = checkRun(variant, out, work.key);
      if (wrong) throw new BenchError(`${variant.label}: ${wrong}`);
      if (round >= 0) times.get(variant.id)!.push(ms);
    }
  }
  return times;
}

// ---- 2 and 3. throughput and latency under load, with memory ----

interface LoadPhase {
  daemon: LoadResult;
  floor: LoadResult;
  /** CPU time each server used during its timed slices; undefined without /proc. */
  cpuMs: { daemon: number | undefined; floor: number | undefined };
  peakKiB: { daemon: number; floor: number };
  peakReset: boolean;
}

async function measureLoad(daemon: Server, floor: Server, options: Options, key: string): Promise<LoadPhase> {
  const request: GetRequest = { v: 1, op: 'get', profile: PROFILE };
  const checkDaemon = (reply: Reply): string | undefined => {
    if (!reply.ok) return `${reply.error.code}: ${reply.error.message}`;
    return 'value' in reply && reply.value === key ? undefined : 'the reply did not carry the key';
  };
  const checkFloor = (reply: Reply): string | undefined =>
    reply.ok ? undefined : `${reply.error.code}: ${reply.error.message}`;
  const load = (server: Server, durationMs: number): Promise<LoadResult> =>
    runLoad({
      socketPath: server.socket,
      clients: options.clients,
      durationMs,
      request,
      check: server === daemon ? checkDaemon : checkFloor,
    });

  const peakReset = resetPeak(daemon.pid) && resetPeak(floor.pid);
  const sampler = samplePeaks([daemon.pid, floor.pid]);
  const durationMs = options.durationS * 1000;
  // Warm-up lets both servers and the client's own code reach steady state before the clock runs.
  const warmupMs = Math.min(500, durationMs / 4);
  await load(floor, warmupMs);
  await load(daemon, warmupMs);
  const cpu = { daemon: 0 as number | undefined, floor: 0 as number | undefined };
  const slices = { daemon: [] as LoadResult[], floor: [] as LoadResult[] };
  const timed = async (which: 'daemon' | 'floor'): Promise<void> => {
    const server = which === 'daemon' ? daemon : floor;
    const before = readCpuMs(server.pid);
    slices[which].push(await load(server, durationMs / LOAD_SLICES));
    const after = readCpuMs(server.pid);
    cpu[which] =
      before === undefined || after === undefined || cpu[which] === undefined
        ? undefined
        : cpu[which] + (after - before);
  };
  // Alternating slices, ABBA ABBA: a neighbour's burst of work that lands in one slice weighs on
  // both servers alike, and a slow drift in the machine's load cancels out.
  for (let i = 0; i < LOAD_SLICES; i++) {
    const pair: Array<'daemon' | 'floor'> = i % 2 === 0 ? ['floor', 'daemon'] : ['daemon', 'floor'];
    for (const which of pair) await timed(which);
  }
  const sampled = sampler.stop();

  const peakOf = (server: Server): number =>
    Math.max(readMemory(server.pid)?.hwmKiB ?? 0, sampled.get(server.pid) ?? 0);
  return {
    daemon: mergeLoads(slices.daemon),
    floor: mergeLoads(slices.floor),
    cpuMs: cpu,
    peakKiB: { daemon: peakOf(daemon), floor: peakOf(floor) },
    peakReset,
  };
}

function readIdle(daemon: Server, floor: Server): { daemon: Memory; floor: Memory } {
  const d = readMemory(daemon.pid);
  const f = readMemory(floor.pid);
  if (!d || !f) throw new BenchError("could not read the servers' memory");
  return { daemon: d, floor: f };
}

// ---- the report ----

interface Row {
  figure: string;
  measured: string;
  floor: string;
  ratio: string;
  goal: string;
  result: string;
}

const ms = (v: number): string => (v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`);
const us = (v: number): string => `${Math.round(v)} us`;
const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
const x = (v: number): string => `${v.toFixed(2)}x`;
const passMiss = (ok: boolean): string => (ok ? 'pass' : 'miss');

function printTable(rows: Row[]): void {
  const header: Row = {
    figure: 'figure',
    measured: 'measured',
    floor: 'floor',
    ratio: 'ratio',
    goal: 'goal',
    result: 'result',
  };
  const all = [header, ...rows];
  const width = (k: keyof Row): number => Math.max(...all.map((r) => r[k].length));
  const w = {
    figure: width('figure'),
    measured: width('measured'),
    floor: width('floor'),
    ratio: width('ratio'),
    goal: width('goal'),
  };
  for (const r of all) {
    console.log(
      [
        r.figure.padEnd(w.figure),
        r.measured.padStart(w.measured),
        r.floor.padStart(w.floor),
        r.ratio.padStart(w.ratio),
        r.goal.padEnd(w.goal),
        r.result,
      ]
        .join('  ')
        .trimEnd(),
    );
  }
}

interface LoadFigures {
  getsPerS: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  /** The server's own CPU time per request, whatever the client could or could not send. */
  cpuUsPerRequest: number | null;
  /** Share of one core the server used while loaded: near 1 means it, not the client, was the limit. */
  cpuBusy: number | null;
}

function loadFigures(r: LoadResult, cpuMs: number | undefined): LoadFigures {
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  const requests = r.ok + r.errors;
  return {
    getsPerS: r.elapsedMs > 0 ? (r.ok * 1000) / r.elapsedMs : 0,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    requests,
    errors: r.errors,
    cpuUsPerRequest: cpuMs === undefined || requests === 0 ? null : (cpuMs * 1000) / requests,
    cpuBusy: cpuMs === undefined || r.elapsedMs === 0 ? null : cpuMs / r.elapsedMs,
  };
}

const roundSummary = (s: Summary): Summary => ({
  n: s.n,
  median: round(s.median),
  p25: round(s.p25),
  p75: round(s.p75),
  min: round(s.min),
  max: round(s.max),
});
const roundAll = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? round(v, 3) : v])) as T;

// ---- the keychain source (bench/keychain.ts) ----

/** Starts a daemon for the keychain figures: its own directory, config and socket inside the workspace. */
function keyringLauncher(work: Workspace): LaunchDaemon {
  return async (name, config, extraEnv) => {
    const dir = fs.mkdtempSync(path.join(work.dir, 'kr-'));
    const configFile = path.join(dir, 'config.yaml');
    fs.writeFileSync(configFile, config, { mode: 0o600 });
    const socket = path.join(dir, 'kb.sock');
    const env = { ...childEnv(dir, socket, configFile), ...extraEnv };
    return startServer(name, [CLI, 'daemon', '--log-level', 'warn'], socket, { ...work, dir, socket, env });
  };
}

function keychainRows(keychain: KeychainFigures | { skipped: string }, fileIdleKiB: number): Row[] {
  if ('skipped' in keychain)
    return [
      { figure: 'keychain source (keyring:)', measured: 'skipped', floor: '-', ratio: '-', goal: '-', result: 'n/a' },
    ];
  const lookup = keychain.lookupMs.median;
  return [
    {
      figure: 'keyring: first fetch (fresh daemon) vs secret-tool lookup',
      measured: ms(keychain.firstFetchMs.median),
      floor: ms(lookup),
      ratio: x(keychain.firstFetchMs.median / lookup),
      goal: '-',
      result: 'info',
    },
    {
      figure: '  refresh, keychain worker running',
      measured: ms(keychain.refreshMs.median),
      floor: ms(lookup),
      ratio: x(keychain.refreshMs.median / lookup),
      goal: '-',
      result: 'info',
    },
    {
      figure: '  refresh after the worker stopped (idle)',
      measured: ms(keychain.idleRefreshMs),
      floor: ms(lookup),
      ratio: x(keychain.idleRefreshMs / lookup),
      goal: '-',
      result: 'info',
    },
    {
      figure: 'daemon RSS idle, keyring: profile fetched, vs file:',
      measured: mib(keychain.rssKiB.idle),
      floor: mib(fileIdleKiB),
      ratio: x(keychain.rssKiB.idle / fileIdleKiB),
      goal: `<= ${GOALS.idleRssMiB} MiB`,
      result: passMiss(keychain.rssKiB.idle / 1024 <= GOALS.idleRssMiB),
    },
    {
      figure: '  while the keychain worker runs',
      measured: mib(keychain.rssKiB.workerRunning),
      floor: mib(fileIdleKiB),
      ratio: x(keychain.rssKiB.workerRunning / fileIdleKiB),
      goal: '-',
      result: 'info',
    },
  ];
}

// ---- main ----

/**
 * The OTLP receiver for --telemetry, in a process of its own: the start-up runs block this one
 * (spawnSync), and a collector that cannot answer would make the daemon's exports time out.
 */
async function startReceiver(): Promise<{ url: string; proc: ChildProcess }> {
  const module = pathToFileURL(path.join(HERE, '..', 'test', 'fakes', 'fake-otlp-receiver.js')).href;
  const proc = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { FakeOtlpReceiver } = await import(${JSON.stringify(module)}); const r = new FakeOtlpReceiver(); console.log(await r.listen()); setInterval(() => r.requests.splice(0), 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.add(proc);
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
    proc.once('exit', () => reject(new BenchError('the OTLP receiver did not start')));
  });
  return { url, proc };
}

function sleep(msec: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msec));
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  for (const file of [CLI, SHIM, FLOOR_SERVER]) {
    if (!fs.existsSync(file))
      throw new BenchError(`${file} is missing: run \`npm run build\` (npm run bench does it for you)`);
  }
  const loadAtStart = os.loadavg();
  const receiver = options.telemetry ? await startReceiver() : undefined;
  const work = createWorkspace(options.audit, receiver?.url);
  const removeWorkspace = (): void => fs.rmSync(work.dir, { recursive: true, force: true });
  process.on('exit', () => {
    for (const child of children) child.kill('SIGTERM');
    removeWorkspace();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

  const started = performance.now();
  const daemon = await startServer(
    'the daemon',
    [...(process.env.KBF ? process.env.KBF.split(' ') : []), CLI, 'daemon', '--log-level', 'warn'],
    work.socket,
    work,
  );
  const warm = await sendRequest(work.socket, { v: 1, op: 'get', profile: PROFILE }, { timeoutMs: 10_000 });
  if (!warm.ok) throw new BenchError(`the warm-up get failed: ${warm.error.code}: ${warm.error.message}`);
  if (!('value' in warm) || warm.value !== work.key)
    throw new BenchError('the warm-up get did not return the key from the file source');
  const ping = await sendRequest(work.socket, { v: 1, op: 'ping' }, { timeoutMs: 5_000 });
  const daemonVersion = ping.ok && 'version' in ping ? ping.version : 'unknown';

  // Same shape and length as the daemon's reply, with a placeholder where the key goes.
  const floorReply = JSON.stringify({ ...warm, value: 'x'.repeat(warm.value.length) });
  const floor = await startServer(
    'the floor server',
    [FLOOR_SERVER, work.floorSocket, floorReply],
    work.floorSocket,
    work,
  );

  // Idle, twice, both judged: just after the warm-up get (start-up's garbage is still there: an
  // idle daemon allocates too little to trigger a GC), and after the start-up runs (the way a
  // daemon sits between shim calls, after a few collections).
  await sleep(300);
  const idleAfterWarmup = readIdle(daemon, floor);
  const variants = startupVariants(work);
  const times = measureStartup(variants, options.runs, work);
  const idleAfterStartup = readIdle(daemon, floor);
  const startup = Object.fromEntries([...times].map(([id, t]) => [id, summarize(t)])) as Record<
    Exclude<VariantId, 'native' | 'true'>,
    Summary
  > &
    Partial<Record<'native' | 'true', Summary>>;
  // Per-round ratios as a cross-check: drift in the machine's load cancels within a round.
  const pairedRatio = (a: VariantId, b: VariantId): number =>
    summarize(times.get(a)!.map((t, i) => t / times.get(b)![i]!)).median;

  const loadPhase = await measureLoad(daemon, floor, options, work.key);
  const after = { daemon: readMemory(daemon.pid), floor: readMemory(floor.pid) };
  // Every get under load is an audit record: how many appends did they cost?
  const status = await sendRequest(work.socket, { v: 1, op: 'status' }, { timeoutMs: 10_000 });
  const audit = status.ok && 'audit' in status ? status.audit : undefined;
  const telemetry = status.ok && 'telemetry' in status ? status.telemetry : undefined;

  const stopped = await daemon.stop();
  const socketLeft = fs.existsSync(work.socket);
  await floor.stop();
  receiver?.proc.kill('SIGTERM');
  const keychain = await benchKeychain(path.join(work.dir, 'keychain'), options, keyringLauncher(work));
  const totalS = (performance.now() - started) / 1000;

  // ---- figures ----
  const shimRatio = startup.shim.median / startup.node.median;
  const shRatio = startup.shimSh.median / startup.nodeSh.median;
  const esmRatio = startup.emptyEsm.median / startup.node.median;
  const nativeStartup = startup.native && startup.true ? { native: startup.native, exec: startup.true } : undefined;
  const native = nativeStartup && {
    medianMs: nativeStartup.native.median,
    ratio: nativeStartup.native.median / startup.node.median,
    vsNodeShim: nativeStartup.native.median / startup.shim.median,
    vsExec: nativeStartup.native.median / nativeStartup.exec.median,
    pairedRatio: pairedRatio('native', 'node'),
  };
  const d = loadFigures(loadPhase.daemon, loadPhase.cpuMs.daemon);
  const f = loadFigures(loadPhase.floor, loadPhase.cpuMs.floor);
  const throughputRatio = d.getsPerS / f.getsPerS;
  const rss = {
    idleKiB: idleAfterWarmup.daemon.rssKiB,
    floorIdleKiB: idleAfterWarmup.floor.rssKiB,
    idleAfterRunsKiB: idleAfterStartup.daemon.rssKiB,
    floorIdleAfterRunsKiB: idleAfterStartup.floor.rssKiB,
    idleAnonKiB: idleAfterWarmup.daemon.anonKiB ?? null,
    floorIdleAnonKiB: idleAfterWarmup.floor.anonKiB ?? null,
    peakKiB: loadPhase.peakKiB.daemon,
    floorPeakKiB: loadPhase.peakKiB.floor,
    afterLoadKiB: after.daemon?.rssKiB ?? null,
  };
  const pass = {
    shim: shimRatio <= GOALS.shimRatio,
    // Not built (no C compiler): nothing to judge, and the Node shim is what runs.
    native: native === undefined || (native.ratio <= GOALS.nativeRatio && native.medianMs <= GOALS.nativeMedianMs),
    throughput: throughputRatio >= GOALS.throughputRatio && d.errors === 0,
    idleRss: Math.max(rss.idleKiB, rss.idleAfterRunsKiB) / 1024 <= GOALS.idleRssMiB,
    peakRss: rss.peakKiB / 1024 <= GOALS.peakRssMiB,
    keychainIdleRss: 'skipped' in keychain || keychain.rssKiB.idle / 1024 <= GOALS.idleRssMiB,
  };

  const la = loadAtStart.map((v) => v.toFixed(2)).join(' ');
  console.log(
    `keybroker ${daemonVersion} bench: node ${process.version} (${process.execPath}) ${process.platform}/${process.arch}, ${os.cpus().length} CPUs, ` +
      `load average ${la} at start; ${options.runs} runs each (+${WARMUP_ROUNDS} warm-up), ${options.durationS} s of load per server, ${options.clients} clients`,
  );
  console.log('');
  const auditRow = audit?.enabled
    ? {
        figure: 'audit trail: records / appends',
        measured: `${audit.written + audit.dropped} records`,
        floor: `${audit.writes} appends`,
        ratio: '-',
        goal: '-',
        result: audit.dropped > 0 ? `info (${audit.dropped} dropped)` : 'info',
      }
    : { figure: 'audit trail', measured: 'off', floor: '-', ratio: '-', goal: '-', result: 'info' };
  const telemetryRow = telemetry
    ? {
        figure: 'telemetry: records exported / dropped',
        measured: `${telemetry.logRecords.exported} exported`,
        floor: `${telemetry.logRecords.dropped} dropped`,
        ratio: '-',
        goal: '-',
        result: 'info',
      }
    : { figure: 'telemetry', measured: 'off', floor: '-', ratio: '-', goal: '-', result: 'info' };
  printTable([
    {
      figure: `warm shim vs node -e 0 (median, direct spawn)`,
      measured: ms(startup.shim.median),
      floor: ms(startup.node.median),
      ratio: x(shimRatio),
      goal: `<= ${x(GOALS.shimRatio)}`,
      result: `${passMiss(pass.shim)}${options.runs < MIN_RUNS ? ' (few runs)' : ''}`,
    },
    {
      figure: `warm shim vs node -e 0, both via sh -c`,
      measured: ms(startup.shimSh.median),
      floor: ms(startup.nodeSh.median),
      ratio: x(shRatio),
      goal: '-',
      result: 'info',
    },
    ...(native && nativeStartup
      ? [
          {
            figure: `warm native shim vs node -e 0 (median)`,
            measured: ms(native.medianMs),
            floor: ms(startup.node.median),
            ratio: x(native.ratio),
            goal: `<= ${x(GOALS.nativeRatio)}, <= ${GOALS.nativeMedianMs} ms`,
            result: `${passMiss(pass.native)}${options.runs < MIN_RUNS ? ' (few runs)' : ''}`,
          },
          {
            figure: `  native shim vs the Node shim`,
            measured: ms(native.medianMs),
            floor: ms(startup.shim.median),
            ratio: x(native.vsNodeShim),
            goal: '-',
            result: 'info',
          },
          {
            figure: `  native shim vs ${TRUE} (exec floor)`,
            measured: ms(native.medianMs),
            floor: ms(nativeStartup.exec.median),
            ratio: x(native.vsExec),
            goal: '-',
            result: 'info',
          },
        ]
      : [
          {
            figure: 'warm native shim vs node -e 0',
            measured: 'not built',
            floor: ms(startup.node.median),
            ratio: '-',
            goal: `<= ${x(GOALS.nativeRatio)}`,
            result: 'n/a',
          },
        ]),
    {
      figure: `empty .mjs file vs node -e 0`,
      measured: ms(startup.emptyEsm.median),
      floor: ms(startup.node.median),
      ratio: x(esmRatio),
      goal: '-',
      result: 'info',
    },
    {
      figure: `daemon gets/s vs trivial server, ${options.clients} clients`,
      measured: `${Math.round(d.getsPerS)}/s`,
      floor: `${Math.round(f.getsPerS)}/s`,
      ratio: x(throughputRatio),
      goal: `>= ${x(GOALS.throughputRatio)}`,
      result: passMiss(pass.throughput),
    },
    {
      figure: `  p50 latency`,
      measured: ms(d.p50Ms),
      floor: ms(f.p50Ms),
      ratio: x(d.p50Ms / f.p50Ms),
      goal: '-',
      result: '',
    },
    {
      figure: `  p99 latency`,
      measured: ms(d.p99Ms),
      floor: ms(f.p99Ms),
      ratio: x(d.p99Ms / f.p99Ms),
      goal: '-',
      result: '',
    },
    ...(d.cpuUsPerRequest !== null && f.cpuUsPerRequest !== null
      ? [
          {
            figure: `  server CPU time per request`,
            measured: us(d.cpuUsPerRequest),
            floor: us(f.cpuUsPerRequest),
            ratio: x(d.cpuUsPerRequest / f.cpuUsPerRequest),
            goal: '-',
            result: '',
          },
        ]
      : []),
    auditRow,
    telemetryRow,
    {
      figure: `daemon RSS idle, just started, vs trivial server`,
      measured: mib(rss.idleKiB),
      floor: mib(rss.floorIdleKiB),
      ratio: x(rss.idleKiB / rss.floorIdleKiB),
      goal: `<= ${GOALS.idleRssMiB} MiB`,
      result: passMiss(rss.idleKiB / 1024 <= GOALS.idleRssMiB),
    },
    {
      figure: `daemon RSS idle, after the start-up runs`,
      measured: mib(rss.idleAfterRunsKiB),
      floor: mib(rss.floorIdleAfterRunsKiB),
      ratio: x(rss.idleAfterRunsKiB / rss.floorIdleAfterRunsKiB),
      goal: `<= ${GOALS.idleRssMiB} MiB`,
      result: passMiss(rss.idleAfterRunsKiB / 1024 <= GOALS.idleRssMiB),
    },
    {
      figure: `daemon RSS peak under load vs trivial server`,
      measured: mib(rss.peakKiB),
      floor: mib(rss.floorPeakKiB),
      ratio: x(rss.peakKiB / rss.floorPeakKiB),
      goal: `<= ${GOALS.peakRssMiB} MiB`,
      result: passMiss(pass.peakRss),
    },
    ...keychainRows(keychain, rss.idleKiB),
  ]);
  console.log('');
  const notes: string[] = [];
  notes.push(
    `start-up: wall time from spawn to exit; p25-p75 shim ${ms(startup.shim.p25)}-${ms(startup.shim.p75)}, ` +
      `node -e 0 ${ms(startup.node.p25)}-${ms(startup.node.p75)}; cross-checks: median of per-round ratios ${x(pairedRatio('shim', 'node'))}, ` +
      `ratio of fastest runs ${x(startup.shim.min / startup.node.min)}`,
  );
  const busy =
    d.cpuBusy !== null && f.cpuBusy !== null
      ? `; busy ${Math.round(d.cpuBusy * 100)}% and ${Math.round(f.cpuBusy * 100)}% of a core (near 100%: the server was the limit, lower: the client or the machine was)`
      : '';
  notes.push(`load: ${d.requests} daemon and ${f.requests} trivial-server requests${busy}`);
  const privateIdle =
    rss.idleAnonKiB !== null && rss.floorIdleAnonKiB !== null
      ? `; private (RssAnon) just started: daemon ${mib(rss.idleAnonKiB)}, trivial server ${mib(rss.floorIdleAnonKiB)}`
      : '';
  notes.push(
    `memory: ${hasProcStatus ? 'VmRSS, and VmHWM for the peak, from /proc/<pid>/status' : 'ps -o rss=, sampled during the load'}` +
      `${hasProcStatus && !loadPhase.peakReset ? ' (peak not reset before the load: it includes start-up)' : ''}${privateIdle}`,
  );
  if (native && nativeStartup) {
    notes.push(
      `native shim: p25-p75 ${ms(nativeStartup.native.p25)}-${ms(nativeStartup.native.p75)}, ${TRUE} ${ms(nativeStartup.exec.p25)}-${ms(nativeStartup.exec.p75)}; ` +
        `median of per-round ratios to node -e 0 ${x(native.pairedRatio)}`,
    );
  } else notes.push(`native shim: ${path.relative(ROOT, NATIVE_SHIM)} not built (no C compiler at build time)`);
  if (options.runs < MIN_RUNS) notes.push(`only ${options.runs} runs: the start-up goal is judged on >= ${MIN_RUNS}`);
  if (d.errors > 0)
    notes.push(`daemon: ${d.errors} of ${d.requests} requests failed, first: ${loadPhase.daemon.firstError ?? ''}`);
  if (f.errors > 0)
    notes.push(`floor: ${f.errors} of ${f.requests} requests failed, first: ${loadPhase.floor.firstError ?? ''}`);
  if (stopped.code !== 0) notes.push(`the daemon exited with ${stopped.code ?? stopped.signal} on SIGTERM`);
  if (socketLeft) notes.push('the daemon left its socket file behind after SIGTERM');
  notes.push(
    'skipped' in keychain
      ? `keychain: not measured: ${keychain.skipped}`
      : `keychain: gnome-keyring-daemon on a private session bus; first fetch over ${keychain.firstFetchMs.n} fresh daemons, refresh = forget then get, round profiles of one entry so each stays within its forced-fetch burst; ` +
          `p25-p75 refresh ${ms(keychain.refreshMs.p25)}-${ms(keychain.refreshMs.p75)}, secret-tool lookup ${ms(keychain.lookupMs.p25)}-${ms(keychain.lookupMs.p75)}`,
  );
  for (const n of notes) console.log(`note: ${n}`);
  console.log('');

  console.log(
    JSON.stringify({
      bench: 'keybroker',
      version: daemonVersion,
      node: process.version,
      platform: `${process.platform}/${process.arch}`,
      cpus: os.cpus().length,
      loadavgAtStart: loadAtStart.map((v) => round(v)),
      runs: options.runs,
      warmupRounds: WARMUP_ROUNDS,
      durationS: options.durationS,
      clients: options.clients,
      shimFile: path.relative(ROOT, SHIM),
      startupMs: Object.fromEntries(Object.entries(startup).map(([k, s]) => [k, roundSummary(s)])),
      nativeShim: native
        ? {
            medianMs: round(native.medianMs, 3),
            ratio: round(native.ratio, 3),
            vsNodeShim: round(native.vsNodeShim, 3),
            vsExec: round(native.vsExec, 3),
            pairedRatio: round(native.pairedRatio, 3),
            goalRatio: GOALS.nativeRatio,
            goalMedianMs: GOALS.nativeMedianMs,
            pass: pass.native,
          }
        : null,
      shim: {
        ratio: round(shimRatio, 3),
        shRatio: round(shRatio, 3),
        esmRatio: round(esmRatio, 3),
        pairedRatio: round(pairedRatio('shim', 'node'), 3),
        minRatio: round(startup.shim.min / startup.node.min, 3),
        goal: GOALS.shimRatio,
        pass: pass.shim,
      },
      load: {
        daemon: roundAll(d),
        floor: roundAll(f),
        ratio: round(throughputRatio, 3),
        goal: GOALS.throughputRatio,
        pass: pass.throughput,
      },
      audit: audit
        ? {
            enabled: audit.enabled,
            records: audit.written + audit.dropped,
            appends: audit.writes,
            dropped: audit.dropped,
          }
        : null,
      rssKiB: {
        ...rss,
        peakReset: loadPhase.peakReset,
        goalIdleMiB: GOALS.idleRssMiB,
        goalPeakMiB: GOALS.peakRssMiB,
        passIdle: pass.idleRss,
        passPeak: pass.peakRss,
      },
      keychain:
        'skipped' in keychain
          ? keychain
          : {
              firstFetchMs: roundSummary(keychain.firstFetchMs),
              refreshMs: roundSummary(keychain.refreshMs),
              idleRefreshMs: round(keychain.idleRefreshMs),
              lookupMs: roundSummary(keychain.lookupMs),
              firstFetchRatio: round(keychain.firstFetchMs.median / keychain.lookupMs.median, 3),
              refreshRatio: round(keychain.refreshMs.median / keychain.lookupMs.median, 3),
              rssKiB: keychain.rssKiB,
              passIdle: pass.keychainIdleRss,
            },
      daemonStop: { code: stopped.code, signal: stopped.signal, ms: round(stopped.ms, 1), socketRemoved: !socketLeft },
      pass: Object.values(pass).every(Boolean),
      totalS: round(totalS, 1),
    }),
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    // BenchErrors are ours and name paths and codes only; anything else is a bug, shown as such.
    console.error(
      `bench: ${err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
    process.exit(1);
  },
);
