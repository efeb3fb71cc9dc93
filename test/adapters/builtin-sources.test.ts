// env:, file: and exec: against the real environment, files and commands.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createAdapter as createEnv } from '../../adapters/env/env-adapter.js';
import { createAdapter as createExec, labelFor } from '../../adapters/exec/exec-adapter.js';
import { createAdapter as createFile } from '../../adapters/file/file-adapter.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { describeAdapterContract, fetchContext } from '../contract/adapter-contract.js';
import { isRunning, privateTempDir, waitFor } from '../helpers/daemon.js';

const log = createLogger({ level: 'silent' });

describeAdapterContract('env', async () => {
  const env: NodeJS.ProcessEnv = {};
  return {
    adapter: createEnv({ settings: undefined, env, log }),
    uriFor: (name) => `env:KB_TEST_${name.toUpperCase()}`,
    put: async (name, value) => {
      env[`KB_TEST_${name.toUpperCase()}`] = value;
    },
    missingUri: 'env:KB_TEST_MISSING',
    invalidUris: ['env:', 'env:1ABC', 'env:A-B', 'env:A B'],
  };
});

describeAdapterContract('file', async () => {
  const dir = privateTempDir('kb-file-');
  return {
    adapter: createFile({ settings: undefined, env: { HOME: dir }, log }),
    uriFor: (name) => `file:~/${name}.key`,
    put: async (name, value) => {
      fs.writeFileSync(path.join(dir, `${name}.key`), `${value}\n`, { mode: 0o600 });
    },
    missingUri: 'file:~/missing.key',
    invalidUris: ['file:relative/key', 'file:'],
  };
});

describeAdapterContract('exec', async () => {
  const dir = privateTempDir('kb-exec-');
  return {
    adapter: createExec({ settings: undefined, env: { ...process.env, HOME: dir }, log }),
    // A command that prints the file, so rotation at the "backend" is a file write.
    uriFor: (name) => `exec:cat ${path.join(dir, name)}`,
    put: async (name, value) => fs.writeFileSync(path.join(dir, name), `  ${value}\n\n`),
    // exec's "not found" is the shell's exit 127: the command does not exist.
    missingUri: `exec:${path.join(dir, 'no-such-command')}`,
    invalidUris: ['exec:', 'exec:   '],
  };
});

describe('exec source', () => {
  const dir = privateTempDir('kb-exec2-');
  const adapter = createExec({ settings: undefined, env: { ...process.env, HOME: dir }, log });

  const fetchErr = async (command: string, signal?: AbortSignal): Promise<BrokerError> => {
    const ref = await adapter.parse(`exec:${command}`, { overrides: undefined, profile: 't' });
    const err = await adapter.fetch(ref, fetchContext(signal ? { signal } : {})).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    return err as BrokerError;
  };

  it('trims stdout', async () => {
    const ref = await adapter.parse('exec:printf "\\n  sk-trim \\n\\n"', { overrides: undefined, profile: 't' });
    expect((await adapter.fetch(ref, fetchContext())).value.reveal()).toBe('sk-trim');
  });

  it('turns a non-zero exit into SOURCE_ERROR carrying the first stderr line', async () => {
    const err = await fetchErr('echo; echo "[ERROR] item not found" >&2; echo second >&2; exit 3');
    expect(err.code).toBe('SOURCE_ERROR');
    expect(err.message).toBe('exec:echo … exited 3: [ERROR] item not found');
    expect(err.status).toBe(3);
  });

  it('runs with stdin closed, so a command that reads stdin sees EOF instead of hanging', async () => {
    const ref = await adapter.parse('exec:read line || echo got-eof', { overrides: undefined, profile: 't' });
    expect((await adapter.fetch(ref, fetchContext())).value.reveal()).toBe('got-eof');
  });

  it('runs without a controlling terminal, so nothing can prompt on /dev/tty', async () => {
    const err = await fetchErr('(exec 3</dev/tty) 2>/dev/null || exit 9');
    expect(err.status).toBe(9);
  });

  it('kills the whole process group when the signal aborts', async () => {
    const pidFile = path.join(dir, 'grandchild.pid');
    const controller = new AbortController();
    setTimeout(() => controller.abort(new BrokerError('TIMEOUT', 'test timeout')), 200);
    const started = Date.now();
    const err = await fetchErr(`sleep 30 & echo $! > ${pidFile}; wait`, controller.signal);
    expect(err.code).toBe('TIMEOUT');
    expect(Date.now() - started).toBeLessThan(2000);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    await new Promise((r) => setTimeout(r, 300));
    expect(isRunning(pid)).toBe(false);
  });

  it.skipIf(process.platform !== 'linux' || !fs.existsSync('/usr/bin/setsid'))(
    'also kills what left the process group with setsid, when the signal aborts',
    async () => {
      const pidFile = path.join(dir, 'escaped.pid');
      const controller = new AbortController();
      // setsid (not a group leader here, so it does not fork) gives the command a session of its own.
      const command = `setsid sh -c 'echo $$ > ${pidFile}; exec sleep 30' & while [ ! -s ${pidFile} ]; do sleep 0.01; done; wait`;
      setTimeout(() => controller.abort(new BrokerError('TIMEOUT', 'test timeout')), 300);
      const err = await fetchErr(command, controller.signal);
      expect(err.code).toBe('TIMEOUT');
      const pid = Number(fs.readFileSync(pidFile, 'utf8'));
      expect(pid).toBeGreaterThan(1);
      // Not in the shell's process group: the group kill alone would leave it running.
      await waitFor(() => !isRunning(pid), 3_000, 'the escaped process to be killed');
    },
  );

  it('refuses output larger than a key can be', async () => {
    const err = await fetchErr('head -c 200000 /dev/zero | tr "\\0" a');
    expect(err.code).toBe('INVALID_VALUE');
  });

  it('reports a command that is not executable as PERMISSION_DENIED', async () => {
    const script = path.join(dir, 'not-exec.sh');
    fs.writeFileSync(script, '#!/bin/sh\necho x\n', { mode: 0o600 });
    expect((await fetchErr(script)).code).toBe('PERMISSION_DENIED');
  });

  it('labels commands by program only: arguments and VAR= prefixes may be secrets', () => {
    expect(labelFor('op read op://Work/Anthropic/credential')).toBe('exec:op …');
    expect(labelFor('/usr/local/bin/op')).toBe('exec:op');
    expect(labelFor('TOKEN=sk-secret vault read x')).toBe('exec:(command)');
    expect(labelFor('"quoted" x')).toBe('exec:(command)');
  });
});

describe('exec source with output: json', () => {
  const dir = privateTempDir('kb-exec3-');
  const adapter = createExec({ settings: undefined, env: { ...process.env, HOME: dir }, log });
  const SECRET = 'sk-ant-json-SECRET-4b3c2d1e';

  /** Run a command that prints `printed` (written to a file, so no shell quoting gets in the way). */
  const fetchPrinted = async (printed: string, output: 'json' | 'text' = 'json') => {
    const file = path.join(dir, `out-${Math.random().toString(36).slice(2)}`);
    fs.writeFileSync(file, printed);
    const ref = await adapter.parse(`exec:cat ${file}`, { overrides: undefined, profile: 't', output });
    return adapter.fetch(ref, fetchContext());
  };
  const failure = async (printed: string): Promise<BrokerError> => {
    const err = await fetchPrinted(printed).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    return err as BrokerError;
  };

  it('takes value and expiresAt (RFC 3339, any zone) from the object the command prints', async () => {
    const r = await fetchPrinted(`  {"value": "${SECRET}", "expiresAt": "2030-01-02T03:04:05+01:00"}\n`);
    expect(r.value.reveal()).toBe(SECRET);
    expect(r.expiresAt).toBe(Date.parse('2030-01-02T02:04:05Z'));
    const frac = await fetchPrinted(`{"value": "${SECRET}", "expiresAt": "2030-01-02T03:04:05.250Z"}`);
    expect(frac.expiresAt).toBe(Date.parse('2030-01-02T03:04:05.250Z'));
  });

  it('accepts a value without an expiry (expiresAt absent or null)', async () => {
    expect((await fetchPrinted(`{"value": "${SECRET}"}`)).expiresAt).toBeUndefined();
    expect((await fetchPrinted(`{"value": "${SECRET}", "expiresAt": null}`)).expiresAt).toBeUndefined();
  });

  it('serves the printed text whole without output: json, JSON or not', async () => {
    const printed = `{"value": "${SECRET}"}`;
    expect((await fetchPrinted(printed, 'text')).value.reveal()).toBe(printed);
  });

  it.each([
    ['not JSON', `${SECRET}`],
    ['truncated JSON', `{"value": "${SECRET}"`],
    ['an array', `["${SECRET}"]`],
    ['a string', `"${SECRET}"`],
    ['no value', `{"expiresAt": "2030-01-01T00:00:00Z"}`],
    ['a value that is not a string', `{"value": 12345}`],
    ['an empty value', `{"value": "  "}`],
    ['an unknown key', `{"value": "x", "${SECRET}": 1}`],
    ['a misspelt expiresAt', `{"value": "${SECRET}", "expires_at": "2030-01-01T00:00:00Z"}`],
    ['an expiresAt without a zone', `{"value": "${SECRET}", "expiresAt": "2030-01-01T00:00:00"}`],
    ['an expiresAt that is a number', `{"value": "${SECRET}", "expiresAt": 1893456000}`],
    ['an expiresAt that is only a date', `{"value": "${SECRET}", "expiresAt": "2030-01-01"}`],
    ['an impossible date', `{"value": "${SECRET}", "expiresAt": "2030-02-30T00:00:00Z"}`],
    ['an impossible time', `{"value": "${SECRET}", "expiresAt": "2030-01-01T24:00:00Z"}`],
  ])('refuses %s with INVALID_VALUE, quoting nothing it printed', async (_what, printed) => {
    const err = await failure(printed);
    expect(err.code).toBe('INVALID_VALUE');
    expect(err.message).not.toContain(SECRET);
    expect(err.message).not.toContain('4b3c2d1e');
  });
});

describe('file source', () => {
  const dir = privateTempDir('kb-file2-');
  const adapter = createFile({ settings: undefined, env: { HOME: dir }, log });

  const attempt = async (name: string) => {
    const ref = await adapter.parse(`file:~/${name}`, { overrides: undefined, profile: 't' });
    return adapter.fetch(ref, fetchContext()).then(
      (r) => ({ value: r.value.reveal(), err: undefined }),
      (e: unknown) => ({ value: undefined, err: e as BrokerError }),
    );
  };

  it('refuses a group- or world-readable file and says how to fix it', async () => {
    fs.writeFileSync(path.join(dir, 'open.key'), 'sk-open\n');
    fs.chmodSync(path.join(dir, 'open.key'), 0o644);
    const { err } = await attempt('open.key');
    expect(err?.code).toBe('PERMISSION_DENIED');
    expect(err?.fix).toContain('chmod 600');
    expect(err?.message).not.toContain('sk-open');
  });

  it('trims exactly one trailing newline (LF or CRLF)', async () => {
    fs.writeFileSync(path.join(dir, 'two.key'), 'sk-two\n\n', { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'crlf.key'), 'sk-crlf\r\n', { mode: 0o600 });
    expect((await attempt('two.key')).value).toBe('sk-two\n');
    expect((await attempt('crlf.key')).value).toBe('sk-crlf');
  });

  it('refuses a directory and says what to create for a missing file', async () => {
    fs.mkdirSync(path.join(dir, 'adir'), { mode: 0o700 });
    expect((await attempt('adir')).err?.code).toBe('INVALID_VALUE');
    const missing = await attempt('nope.key');
    expect(missing.err?.code).toBe('NOT_FOUND');
    expect(missing.err?.fix).toContain('umask 077');
  });
});
