// Drive test/helpers/fake-claude.mjs: one long-lived "claude" process calling the helper on demand.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { RunResult } from './daemon.js';

const DRIVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fake-claude.mjs');

export const CLAUDE_ENV = {
  CLAUDE_CODE_ENTRYPOINT: 'cli',
  AI_AGENT: 'claude-code_2.1.330_cli',
};

export interface FakeClaude {
  pid: number;
  /** Run the helper once, as Claude Code does after start-up, its TTL, or a 401. */
  callHelper(helper: string): Promise<Omit<RunResult, 'ms'>>;
  close(): void;
}

export function startFakeClaude(dir: string, env: NodeJS.ProcessEnv, name = 'claude'): FakeClaude {
  const exe = path.join(dir, name);
  if (!fs.existsSync(exe)) fs.symlinkSync(process.execPath, exe);
  const proc: ChildProcess = spawn(exe, [DRIVER], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const answers = readline.createInterface({ input: proc.stdout! });
  const waiting: Array<(r: Omit<RunResult, 'ms'>) => void> = [];
  answers.on('line', (line) => waiting.shift()?.(JSON.parse(line) as Omit<RunResult, 'ms'>));
  return {
    pid: proc.pid!,
    callHelper: (helper) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        proc.stdin!.write(`${JSON.stringify({ helper })}\n`);
      }),
    close: () => {
      proc.stdin!.end();
      proc.kill();
    },
  };
}
