// Run a program with stdin closed and collect what it prints: how the stand-in agents
// (fake-claude.mjs, fake-codex.mjs) run the commands they are asked to.
import { spawn } from 'node:child_process';

/** Resolves with { code, stdout, stderr } once the program has exited and closed its output. */
export function runCollect(file, args, env) {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
