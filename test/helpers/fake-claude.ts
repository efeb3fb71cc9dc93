// Drive test/helpers/fake-claude.mjs: one long-lived "claude" process that runs apiKeyHelper and
// its agent's Bash-tool commands on demand, with the environments Claude Code 2.1.330 gives them;
// and test/helpers/fake-codex.mjs, a "codex" process that runs a provider's auth command and its
// agent's exec_command tool the way Codex 0.169.0 does. Each is closed, if the test has not
// closed it, when the test (or file) that started it is done.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cleanUp } from './cleanup.js';
import type { RunResult } from './daemon.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * The Claude Code process's own environment. The driver adds the per-child markers: the harness
 * marker for helpers, the agent markers for Bash-tool commands.
 */
export const CLAUDE_ENV = {
  CLAUDE_CODE_ENTRYPOINT: 'cli',
};

/** A Claude Code release whose children carry neither marker (ENTRYPOINT only). */
export const UNMARKED_CLAUDE_ENV = {
  CLAUDE_CODE_ENTRYPOINT: 'cli',
  FAKE_CLAUDE_MARKERS: 'none',
};

export interface FakeClaude {
  pid: number;
  /** Run a helper once (`sh -c`), as Claude Code does after start-up, its TTL, or a 401. */
  callHelper(helper: string): Promise<Omit<RunResult, 'ms'>>;
  /** Run a command through the agent's Bash tool (`bash -c`, agent markers). */
  bashTool(command: string): Promise<Omit<RunResult, 'ms'>>;
  close(): void;
}

/** `cwd`: the project the session runs in (its helpers inherit it, as with the real Claude Code). */
export function startFakeClaude(dir: string, env: NodeJS.ProcessEnv, name = 'claude', cwd?: string): FakeClaude {
  const driver = startDriver('fake-claude.mjs', dir, env, name, cwd);
  return {
    pid: driver.pid,
    callHelper: (helper) => driver.call({ kind: 'helper', command: helper }),
    bashTool: (command) => driver.call({ kind: 'bash-tool', command }),
    close: driver.close,
  };
}

export interface FakeCodex {
  pid: number;
  /** Run a provider's auth command once (no shell), as Codex does at start-up, on schedule, or after a 401. */
  runAuth(argv: string[]): Promise<Omit<RunResult, 'ms'>>;
  /** Run a command through the agent's exec_command tool (`bash -c`, Codex's markers). */
  tool(command: string): Promise<Omit<RunResult, 'ms'>>;
  close(): void;
}

export function startFakeCodex(dir: string, env: NodeJS.ProcessEnv, name = 'codex', cwd?: string): FakeCodex {
  const driver = startDriver('fake-codex.mjs', dir, env, name, cwd);
  return {
    pid: driver.pid,
    runAuth: (argv) => driver.call({ kind: 'auth', argv }),
    tool: (command) => driver.call({ kind: 'tool', argv: [command] }),
    close: driver.close,
  };
}

/** node running `script` through a symlink called `name` (the consumer's process name). */
function startDriver(
  script: string,
  dir: string,
  env: NodeJS.ProcessEnv,
  name: string,
  cwd: string | undefined,
): { pid: number; call(message: object): Promise<Omit<RunResult, 'ms'>>; close(): void } {
  const exe = path.join(dir, name);
  if (!fs.existsSync(exe)) fs.symlinkSync(process.execPath, exe);
  const proc: ChildProcess = spawn(exe, [path.join(HERE, script), dir], {
    env,
    cwd,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const answers = readline.createInterface({ input: proc.stdout! });
  const waiting: Array<(r: Omit<RunResult, 'ms'>) => void> = [];
  answers.on('line', (line) => waiting.shift()?.(JSON.parse(line) as Omit<RunResult, 'ms'>));
  const close = (): void => {
    proc.stdin!.end();
    proc.kill();
  };
  cleanUp(close);
  return {
    pid: proc.pid!,
    call: (message) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        proc.stdin!.write(`${JSON.stringify(message)}\n`);
      }),
    close,
  };
}
