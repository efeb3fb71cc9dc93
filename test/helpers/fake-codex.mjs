// Stands in for the Codex process: started through a symlink named `codex` (so the shim sees a
// consumer named codex), it runs commands the way Codex 0.169.0 does, one per line of JSON on its
// stdin, answering each on stdout:
// - kind "auth": a model provider's auth command, run directly (no shell) with its args, stdin
//   closed and Codex's own environment, unchanged;
// - kind "tool": the agent's exec_command tool, through `/bin/bash -c <command>` with the markers
//   Codex adds: CODEX_THREAD_ID, CODEX_SESSION_ID, CODEX_TOOL_CALL_ID, CODEX_CI and the rest.
// Measured against the real Codex (docs/codex.md, "What Codex runs, and how").
import { randomUUID } from 'node:crypto';
import process from 'node:process';
import readline from 'node:readline';
import { runCollect } from './run-collect.mjs';

const thread = randomUUID();
let calls = 0;

function run(kind, argv) {
  const env = { ...process.env };
  let file = argv[0];
  let args = argv.slice(1);
  if (kind === 'tool') {
    file = '/bin/bash';
    args = ['-c', argv.join(' ')];
    Object.assign(env, {
      CODEX_THREAD_ID: thread,
      CODEX_SESSION_ID: thread,
      CODEX_TOOL_CALL_ID: `call_${++calls}`,
      CODEX_CI: '1',
      CODEX_VERSION: '0.169.0',
      CODEX_APPLY_PATCH_PRESERVE_LINE_ENDINGS: '1',
      NO_COLOR: '1',
      PAGER: 'cat',
      TERM: 'dumb',
    });
  }
  return runCollect(file, args, env);
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const { kind, argv } = JSON.parse(line);
  process.stdout.write(`${JSON.stringify(await run(kind, argv))}\n`);
}
