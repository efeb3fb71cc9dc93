// Stands in for the Claude Code process: started through a symlink named `claude` (so the shim
// sees a consumer named claude), it runs commands the way Claude Code 2.1.330 does, one per line
// of JSON on its stdin, answering each on stdout:
// - kind "helper": apiKeyHelper and its siblings, through `/bin/sh -c <helper>` with
//   AI_AGENT=claude-code_<version>_harness added when the process was started as Claude Code;
// - kind "bash-tool": the agent's Bash tool, through `/bin/bash -c "source <snapshot> && eval …"`,
//   with CLAUDECODE=1, CLAUDE_CODE_CHILD_SESSION=1, CLAUDE_PID, CLAUDE_CODE_SESSION_ID,
//   CLAUDE_CODE_EXECPATH and AI_AGENT=claude-code_<version>_agent.
// stdin of the command is never a terminal. Markers come from ../../../shared/claude-code.md.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import readline from 'node:readline';
import { runCollect } from './run-collect.mjs';

const VERSION = '2.1.330';
const asClaudeCode = Boolean(process.env.CLAUDE_CODE_ENTRYPOINT) && process.env.FAKE_CLAUDE_MARKERS !== 'none';
const sessionId = randomUUID();
// The test's directory, given as the first argument, holds the shell snapshot.
const snapshot = path.join(process.argv[2] ?? os.tmpdir(), `snapshot-bash-${process.pid}.sh`);
fs.writeFileSync(snapshot, '# shell snapshot\n');

function run(kind, command) {
  const env = { ...process.env };
  delete env.FAKE_CLAUDE_MARKERS;
  let file = '/bin/sh';
  let args = ['-c', command];
  if (kind === 'bash-tool') {
    file = '/bin/bash';
    args = ['-c', `source ${snapshot} && eval ${JSON.stringify(command)}`];
    if (asClaudeCode) {
      Object.assign(env, {
        CLAUDECODE: '1',
        CLAUDE_CODE_CHILD_SESSION: '1',
        CLAUDE_PID: String(process.pid),
        CLAUDE_CODE_SESSION_ID: sessionId,
        CLAUDE_CODE_EXECPATH: process.execPath,
        AI_AGENT: `claude-code_${VERSION}_agent`,
      });
    }
  } else if (asClaudeCode) {
    env.AI_AGENT = `claude-code_${VERSION}_harness`;
  }
  return runCollect(file, args, env);
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const { kind, command } = JSON.parse(line);
  process.stdout.write(`${JSON.stringify(await run(kind, command))}\n`);
}
fs.rmSync(snapshot, { force: true });
