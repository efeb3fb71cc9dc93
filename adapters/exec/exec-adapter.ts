// exec: — run a command and use what it prints. Wraps any existing helper:
//
//   profiles:
//     work:
//       source: exec:op read op://Work/Anthropic/credential
//       ttl: 1h
//
// The command runs under /bin/sh -c in its own session (no controlling terminal, so it cannot
// prompt), with stdin closed, the daemon's environment, and your home directory as working
// directory. It is killed (whole process group) when the profile's timeout elapses.
// stdout is trimmed and used whole; a non-zero exit fails with the first line of stderr.
import { spawn } from 'node:child_process';
import os from 'node:os';
import type { Adapter, AdapterInit, FetchContext, FetchResult } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { SecretValue } from '../../src/secret.js';

interface ExecRef {
  command: string;
  label: string;
}

const MAX_STDOUT_BYTES = 64 * 1024;
const MAX_STDERR_BYTES = 8 * 1024;
const KILL_GRACE_MS = 1000;

export function createAdapter(init: AdapterInit): Adapter<ExecRef> {
  const cwd = init.env.HOME || os.homedir();
  return {
    kind: 'exec',
    parse(uri) {
      const command = uri.slice('exec:'.length).trim();
      if (command.length === 0) {
        throw new BrokerError('CONFIG_INVALID', `"exec:" needs a command, e.g. exec:op read op://Private/Anthropic/credential`);
      }
      return { command, label: labelFor(command) };
    },
    describe: (ref) => ref.label,
    fetch: (ref, ctx) => runCommand(ref, ctx, init.env, cwd),
    async close() {},
  };
}

/**
 * A printable name for a command: its program only. Arguments may carry a literal secret
 * (`exec:echo sk-…`), and a leading VAR=value word certainly might.
 */
export function labelFor(command: string): string {
  const first = command.trim().split(/[\s;&|()<>]+/)[0] ?? '';
  if (first === '' || first.includes('=') || /['"$`\\]/.test(first)) return 'exec:(command)';
  const program = first.slice(first.lastIndexOf('/') + 1);
  return command.trim() === first ? `exec:${program}` : `exec:${program} …`;
}

function runCommand(ref: ExecRef, ctx: FetchContext, env: NodeJS.ProcessEnv, cwd: string): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
    if (ctx.signal.aborted) {
      reject(abortError(ctx.signal, ref));
      return;
    }
    const child = spawn('/bin/sh', ['-c', ref.command], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env,
      cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let overflow = false;
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;

    const killGroup = (signal: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      ctx.signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = (): void => {
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
      settle(() => reject(abortError(ctx.signal, ref)));
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > MAX_STDOUT_BYTES) {
        if (!overflow) {
          overflow = true;
          killGroup('SIGKILL');
        }
        return;
      }
      out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (errBytes < MAX_STDERR_BYTES) err.push(chunk.subarray(0, MAX_STDERR_BYTES - errBytes));
      errBytes += chunk.length;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      settle(() => reject(new BrokerError('SOURCE_ERROR', `${ref.label}: could not start /bin/sh (${e.code ?? e.name})`)));
    });
    child.on('close', (code, signal) => {
      if (killTimer) clearTimeout(killTimer);
      const stdout = Buffer.concat(out);
      settle(() => {
        if (overflow) {
          reject(new BrokerError('INVALID_VALUE', `${ref.label} printed more than ${MAX_STDOUT_BYTES} bytes; a key is expected`));
        } else if (code === 127 || code === 126) {
          // The shell's own statuses: the program is missing or not executable. Under a service
          // manager this is usually PATH (launchd's default PATH lacks /opt/homebrew/bin).
          const firstLine = firstStderrLine(Buffer.concat(err));
          reject(
            code === 127
              ? new BrokerError('NOT_FOUND', `${ref.label}: command not found (exit 127) — is it installed and on the daemon's PATH (${env.PATH ?? 'unset'})?`, { status: code })
              : new BrokerError('PERMISSION_DENIED', `${ref.label}: command is not executable (exit 126)${firstLine ? `: ${firstLine}` : ''}`, { status: code }),
          );
        } else if (code !== 0) {
          const firstLine = firstStderrLine(Buffer.concat(err));
          const how = signal ? `was killed by ${signal}` : `exited ${code}`;
          reject(new BrokerError('SOURCE_ERROR', `${ref.label} ${how}${firstLine ? `: ${firstLine}` : ' (no stderr)'}`, { status: code ?? signal ?? undefined }));
        } else {
          resolve({ value: SecretValue.fromString(stdout.toString('utf8').trim()) });
        }
        stdout.fill(0);
      });
    });
  });
}

function firstStderrLine(stderr: Buffer): string {
  const text = stderr.toString('utf8');
  const line = text.split(/\r?\n/).find((l) => l.trim().length > 0) ?? '';
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  const clean = line.replace(/[\u0000-\u001f\u007f]/g, ' ').trim();
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

function abortError(signal: AbortSignal, ref: ExecRef): BrokerError {
  return signal.reason instanceof BrokerError ? signal.reason : new BrokerError('TIMEOUT', `${ref.label} was stopped before it finished`);
}
