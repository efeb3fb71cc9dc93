// Stands in for the Claude Code process: started through a symlink named `claude` (so the shim
// sees a consumer named claude), it runs apiKeyHelper commands the way Claude Code does — through
// `sh -c`, stdin not a terminal — one per line of JSON on its stdin, answering each on stdout.
import { spawn } from 'node:child_process';
import process from 'node:process';
import readline from 'node:readline';

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const { helper } = JSON.parse(line);
  const result = await new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', helper], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
