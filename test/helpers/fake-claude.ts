// Drive test/helpers/fake-claude.mjs: one long-lived "claude" process that runs apiKeyHelper and
// its agent's Bash-tool commands on demand, with the environments Claude Code 2.1.330 gives them.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { RunResult } from './daemon.js';

const DRIVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fake-claude.mjs');

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
  const exe = path.join(dir, name);
  if (!fs.existsSync(exe)) fs.symlinkSync(process.execPath, exe);
  const proc: ChildProcess = spawn(exe, [DRIVER, dir], { env, cwd, stdio: ['pipe', 'pipe', 'inherit'] });
  const answers = readline.createInterface({ input: proc.stdout! });
  const waiting: Array<(r: Omit<RunResult, 'ms'>) => void> = [];
  answers.on('line', (line) => waiting.shift()?.(JSON.parse(line) as Omit<RunResult, 'ms'>));
  const call = (kind: 'helper' | 'bash-tool', command: string): Promise<Omit<RunResult, 'ms'>> =>
    new Promise((resolve) => {
      waiting.push(resolve);
      proc.stdin!.write(`${JSON.stringify({ kind, command })}\n`);
    });
  return {
    pid: proc.pid!,
    callHelper: (helper) => call('helper', helper),
    bashTool: (command) => call('bash-tool', command),
    close: () => {
      proc.stdin!.end();
      proc.kill();
    },
  };
}
