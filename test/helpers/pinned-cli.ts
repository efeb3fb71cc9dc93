// The real agent CLIs the tests drive — Claude Code and Codex. Not devDependencies (each is ~400 MB
// that would come with every contributor's `npm ci`): installed from the npm registry on first use
// into .cache/<name>/<version>/ (ignored by git), the way .ci/run installs Node 22 and 24 into
// .ci/node/. Each version is pinned here and nowhere else.
//
// Several vitest workers may ask at once: one takes a lock file and installs, the others wait for
// it (at most the install's own time limit) and then use its result. The install goes into a
// directory of its own and is renamed into place only once `<bin> --version` answers with the
// version, so a half-done install is never used, even one killed mid-way or racing a stale lock's
// new owner. Any failure (the registry unreachable, a timeout) throws: the tests that need it
// fail, loudly.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT } from './daemon.js';
import { registryEnv } from './extra-ca-certs.js';

/** A CLI the tests install from the npm registry, pinned. */
export interface PinnedCli {
  /** The npm package. */
  package: string;
  version: string;
  /** Its executable in node_modules/.bin. */
  bin: string;
  /** .cache/<cacheName> in this checkout holds its versions. */
  cacheName: string;
  /** Its install scripts put the platform's binary in place: allowed for the pinned version only. */
  allowScripts: boolean;
}

/** Claude Code: its postinstall script fetches the platform's native binary. */
export const CLAUDE_CODE: PinnedCli = {
  package: '@anthropic-ai/claude-code',
  version: '2.1.332',
  bin: 'claude',
  cacheName: 'claude-code',
  allowScripts: true,
};
/**
 * Codex: the platform's native binary comes as an optional dependency (@openai/codex-linux-x64 …,
 * npm aliases of @openai/codex@<version>-<platform>); no install script. 0.169.0 is the release
 * docs/codex.md was measured on.
 */
export const CODEX: PinnedCli = {
  package: '@openai/codex',
  version: '0.169.0',
  bin: 'codex',
  cacheName: 'codex',
  allowScripts: false,
};

/** A registry install of ~400 MB on a slow link; CI's whole run has 90 minutes. */
export const CLI_INSTALL_TIMEOUT_MS = 10 * 60_000;

export type CliInstallErrorCode = 'INSTALL_FAILED' | 'INSTALL_TIMEOUT' | 'LOCK_TIMEOUT' | 'NOT_RUNNABLE';

export class CliInstallError extends Error {
  constructor(
    readonly code: CliInstallErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliInstallError';
  }
}

export interface PinnedCliOptions {
  version?: string;
  /** Where versions are installed (default: .cache/<cacheName> in this checkout). */
  cacheDir?: string;
  /** Extra environment for npm (tests of this helper point it at a fake registry). */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/**
 * The environment a test runs Claude Code in: `base` (a test daemon's, HOME its directory), the
 * fake Messages API, its own TMPDIR, nothing sent anywhere else, and nothing that would win over
 * apiKeyHelper or say it already runs inside Claude Code (or tmux).
 */
export function claudeCodeEnv(base: NodeJS.ProcessEnv, apiUrl: string, tmpdir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    ANTHROPIC_BASE_URL: apiUrl,
    TMPDIR: tmpdir,
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_AUTOUPDATER: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  };
  for (const name of [
    'ANTHROPIC_API_KEY',
    'ANTHROPIC_AUTH_TOKEN',
    'CLAUDECODE',
    'CLAUDE_PID',
    'CLAUDE_CODE_USE_BEDROCK',
    'CLAUDE_CODE_USE_VERTEX',
    'CLAUDE_CODE_USE_FOUNDRY',
    'CLAUDE_CONFIG_DIR',
    'TMUX',
  ])
    delete env[name];
  return env;
}

/** The `claude` executable of the pinned version, installed first if it is not there yet. */
export function claudeCode(options: PinnedCliOptions = {}): Promise<string> {
  return installedCli(CLAUDE_CODE, options);
}

/** The `codex` executable (npm's launcher) of the pinned version, installed first if need be. */
export function codex(options: PinnedCliOptions = {}): Promise<string> {
  return installedCli(CODEX, options);
}

/** The executable of `cli`, installed first if it is not there yet. */
export async function installedCli(cli: PinnedCli, options: PinnedCliOptions = {}): Promise<string> {
  const version = options.version ?? cli.version;
  const cacheDir = options.cacheDir ?? path.join(ROOT, '.cache', cli.cacheName);
  const timeoutMs = options.timeoutMs ?? CLI_INSTALL_TIMEOUT_MS;
  const label = `${cli.package}@${version}`;
  const dir = path.join(cacheDir, version);
  const bin = path.join(dir, 'node_modules', '.bin', cli.bin);
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(cacheDir, { recursive: true });
  const lock = path.join(cacheDir, `${version}.lock`);
  // A holder that is alive finishes (or is killed) within timeoutMs; a little more for its checks.
  const deadline = Date.now() + timeoutMs + 30_000;
  for (;;) {
    if (fs.existsSync(bin)) return bin;
    if (takeLock(lock)) {
      try {
        if (!fs.existsSync(bin)) await install(cli, dir, version, options.env ?? {}, timeoutMs);
        return bin;
      } finally {
        fs.rmSync(lock, { force: true });
      }
    }
    if (Date.now() > deadline)
      throw new CliInstallError(
        'LOCK_TIMEOUT',
        `waited ${Math.round((timeoutMs + 30_000) / 1000)} s for another test process to install ${label} into ${dir}; if none is running, remove ${lock}`,
      );
    // Polling the lock file: what we wait for is the other process's install to end.
    await sleep(250);
  }
}

/** Create the lock with our pid; a lock whose holder is gone is removed and taken. */
function takeLock(lock: string): boolean {
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let holder: string;
  let age: number;
  try {
    holder = fs.readFileSync(lock, 'utf8').trim();
    age = Date.now() - fs.statSync(lock).mtimeMs;
  } catch {
    return false; // released just now: the next round may take it
  }
  // Empty: created a moment ago, its pid not written yet.
  if (holder === '' ? age < 10_000 : isAlive(Number(holder))) return false;
  fs.rmSync(lock, { force: true });
  return false; // the next round takes it, or sees that another process took it first
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function install(
  cli: PinnedCli,
  dir: string,
  version: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<void> {
  const label = `${cli.package}@${version}`;
  const work = `${dir}.partial-${process.pid}`;
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  try {
    fs.writeFileSync(
      path.join(work, 'package.json'),
      `${JSON.stringify(
        {
          name: `keybroker-test-${cli.cacheName}`,
          private: true,
          dependencies: { [cli.package]: version },
          ...(cli.allowScripts && { allowScripts: { [label]: true } }),
        },
        null,
        2,
      )}\n`,
    );
    const started = Date.now();
    const npm = await runBounded(
      'npm',
      ['install', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'],
      { cwd: work, env: { ...process.env, ...registryEnv(), ...env }, timeoutMs },
    );
    if (npm.timedOut)
      throw new CliInstallError(
        'INSTALL_TIMEOUT',
        `npm install ${label} did not finish within ${Math.round(timeoutMs / 1000)} s; stopped`,
      );
    if (npm.code !== 0)
      throw new CliInstallError(
        'INSTALL_FAILED',
        `npm install ${label} failed (exit ${npm.code}) — is the npm registry reachable? ${lastLines(npm.output)}`,
      );
    const bin = path.join(work, 'node_modules', '.bin', cli.bin);
    const check = await runBounded(bin, ['--version'], { cwd: work, env: process.env, timeoutMs: 60_000 });
    if (check.code !== 0 || !check.output.includes(version))
      throw new CliInstallError(
        'NOT_RUNNABLE',
        `${label} installed, but \`${cli.bin} --version\` answered (exit ${check.code}): ${lastLines(check.output)}`,
      );
    try {
      fs.renameSync(work, dir);
    } catch (err) {
      // Another process, having found the lock stale, installed the same version first: use its.
      if (!['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
    const shown = path.relative(ROOT, dir).startsWith('..') ? dir : path.relative(ROOT, dir);
    console.log(`installed ${label} into ${shown} in ${Math.round((Date.now() - started) / 1000)} s`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-5).join(' | ');
}

function runBounded(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ code: number | null; output: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout stops npm and the scripts it runs.
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: 'pipe', detached: true });
    let output = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-16_384)));
    child.stderr.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-16_384)));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, options.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, timedOut });
    });
  });
}
