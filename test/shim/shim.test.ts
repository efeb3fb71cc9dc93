// keybroker-shim as Claude Code runs it: `sh -c "<shim> PROFILE"`, stdout taken whole as the key.
// Every case runs against both shims, the Node one and the native fast path.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sendRequest } from '../../src/client/client.js';
import { ERROR_CODES, type StatusReply } from '../../src/protocol/messages.js';
import {
  baseEnv,
  privateTempDir,
  run,
  SHIMS,
  sharedDaemon,
  waitFor,
  type RunResult,
  shellQuote,
} from '../helpers/daemon.js';

const KEY = 'sk-shim-8c1d77';
// One daemon for both shims. A profile whose state a test changes (its cached value, its fetch
// count) comes once per shim, named for it, so neither shim's tests see the other's.
const d = sharedDaemon({
  config: [
    'profiles:',
    '  default:',
    '    source: env:KB_SHIM_KEY',
    '  failing:',
    `    source: 'exec:echo "[ERROR] 2026/11/22 op: not signed in" >&2; exit 1'`,
    '  slow:',
    '    source: exec:sleep 5; echo late',
    '    timeout: 300ms',
    '  missing:',
    '    source: file:~/no-such.key',
    '  headers-json:',
    '    source: env:KB_SHIM_HEADERS',
    '  aws-json:',
    '    source: env:KB_SHIM_AWS',
    ...SHIMS.flatMap(({ name }) => [
      `  work-${name}:`,
      `    source: exec:cat ./work-${name}.key`,
      '    ttl: 1s',
      `  counted-${name}:`,
      `    source: exec:echo x >> ./counted-${name}; sleep 0.3; echo sk-counted`,
      `  flaky-${name}:`,
      `    source: exec:cat ./flaky-${name}.key`,
      '    ttl: 1s',
      '    maxStale: 1h',
      `  refreshed-${name}:`,
      `    source: exec:cat ./refreshed-${name}.key`,
      '    ttl: 1h',
    ]),
  ].join('\n'),
  env: {
    KB_SHIM_KEY: KEY,
    KB_SHIM_HEADERS: '{"x-honeycomb-team":"hc-123","Authorization":"Bearer otel"}',
    KB_SHIM_AWS:
      '{"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"secret","SessionToken":"tok","Expiration":"2026-11-22T12:00:00Z"}',
  },
});

describe.each(SHIMS)('$name shim', ({ name, path: shim, skip }) => {
  describe.skipIf(skip !== undefined)(skip ?? 'against a real daemon', () => {
    const shimRun = (args = '', env: NodeJS.ProcessEnv = {}): Promise<RunResult> => d.shim(args, env, shim);
    /** This shim's own profile of that kind (and the file its source reads). */
    const own = (profile: 'work' | 'counted' | 'flaky' | 'refreshed'): string => `${profile}-${name}`;

    describe('output', () => {
      it('prints exactly the value and a newline, and nothing on stderr', async () => {
        expect(await shimRun()).toMatchObject({ code: 0, stdout: `${KEY}\n`, stderr: '' });
        expect(await shimRun('default')).toMatchObject({ code: 0, stdout: `${KEY}\n`, stderr: '' });
      });

      it('never reads stdin: it exits even when stdin stays open', async () => {
        const child = spawn('/bin/sh', ['-c', shellQuote(shim)], { env: d.env, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        const code = await new Promise<number | null>((r) => child.on('close', r));
        expect(code).toBe(0);
        expect(out).toBe(`${KEY}\n`);
        child.stdin.destroy();
      });

      it('picks up a value rotated at the source once its TTL has run out', async () => {
        fs.writeFileSync(path.join(d.dir, `${own('work')}.key`), 'sk-work-1');
        expect((await shimRun(own('work'))).stdout).toBe('sk-work-1\n');
        fs.writeFileSync(path.join(d.dir, `${own('work')}.key`), 'sk-work-2');
        expect((await shimRun(own('work'))).stdout).toBe('sk-work-1\n');
        await new Promise((r) => setTimeout(r, 1_200));
        expect((await shimRun(own('work'))).stdout).toBe('sk-work-2\n');
      });

      it('--refresh fetches from the source at once', async () => {
        // Its own profile and key file (TTL 1h): cached first, then rotated, so only --refresh sees it.
        fs.writeFileSync(path.join(d.dir, `${own('refreshed')}.key`), 'sk-refresh-1');
        expect((await shimRun(own('refreshed'))).stdout).toBe('sk-refresh-1\n');
        fs.writeFileSync(path.join(d.dir, `${own('refreshed')}.key`), 'sk-refresh-2');
        expect((await shimRun(own('refreshed'))).stdout).toBe('sk-refresh-1\n');
        expect((await shimRun(`--refresh ${own('refreshed')}`)).stdout).toBe('sk-refresh-2\n');
      });

      it('serves the last good value with a warning while the source fails, within maxStale', async () => {
        fs.writeFileSync(path.join(d.dir, `${own('flaky')}.key`), 'sk-flaky');
        expect((await shimRun(own('flaky'))).stdout).toBe('sk-flaky\n');
        fs.rmSync(path.join(d.dir, `${own('flaky')}.key`));
        await new Promise((r) => setTimeout(r, 1_200));
        const stale = await shimRun(own('flaky'));
        expect(stale.code).toBe(0);
        expect(stale.stdout).toBe('sk-flaky\n');
        expect(stale.stderr).toMatch(
          /^keybroker: warning: serving a cached value past its TTL: exec:cat … exited 1: cat: .*No such file/,
        );
        const status = (await d.request({ v: 1, op: 'status' })) as StatusReply;
        expect(status.profiles.find((p) => p.name === own('flaky'))!.state).toBe('stale');
      });

      it('makes one backend fetch for many concurrent cold requests', async () => {
        // (Four: more than one is the point, and four arrive within the source's 0.3 s even on a
        // busy two-core machine; each is a Node start for the Node shim.)
        const results = await Promise.all(Array.from({ length: 4 }, () => shimRun(own('counted'))));
        expect(results.every((r) => r.code === 0 && r.stdout === 'sk-counted\n')).toBe(true);
        expect(fs.readFileSync(path.join(d.dir, own('counted')), 'utf8')).toBe('x\n');
      });
    });

    describe('failures: nothing on stdout, one line on stderr, an exit status per cause', () => {
      const cases: Array<[string, string, number, RegExp]> = [
        ['an unknown profile', 'nope', 4, /^keybroker: no profile "nope" in .*\(profiles: default, failing, /],
        [
          'a source error',
          'failing',
          5,
          /^keybroker: profile "failing": exec:echo … exited 1: \[ERROR\] 2026\/11\/22 op: not signed in\n$/,
        ],
        ['a source timeout', 'slow', 6, /^keybroker: profile "slow": exec:sleep … did not answer within 300ms /],
        [
          'a missing key file',
          'missing',
          10,
          /^keybroker: profile "missing": .*no-such\.key does not exist — create it with/,
        ],
        ['a bad option', '--frobnicate', 2, /^keybroker: unknown option --frobnicate \(see keybroker-shim --help\)\n$/],
      ];
      it.each(cases)('%s', async (_what, args, code, stderr) => {
        const r = await shimRun(args);
        expect(r.code).toBe(code);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(stderr);
        expect(r.stderr.endsWith('\n')).toBe(true);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
      });

      it('no daemon and autostart off: exit 3 with what to do', async () => {
        const r = await shimRun('', { KEYBROKER_SOCKET: path.join(d.dir, 'nowhere', 'kb.sock') });
        expect(r.code).toBe(3);
        expect(r.stdout).toBe('');
        expect(r.stderr).toBe(
          `keybroker: keybroker daemon not reachable on ${path.join(d.dir, 'nowhere', 'kb.sock')} (no socket there); autostart is off (KEYBROKER_NO_AUTOSTART=1) — install the service: keybroker service install, or run keybroker daemon in a terminal of its own\n`,
        );
      });

      it('--help explains itself and exits 0', async () => {
        const r = await shimRun('--help');
        expect(r.code).toBe(0);
        expect(r.stdout).toContain('usage: keybroker-shim');
        expect(r.stdout).toContain('apiKeyHelper');
      });
    });

    describe('--format for Claude Code’s sibling helpers', () => {
      it('headers: a plain value becomes a Bearer Authorization header', async () => {
        const r = await shimRun('--format headers default');
        expect(r.code).toBe(0);
        expect(JSON.parse(r.stdout)).toEqual({ Authorization: `Bearer ${KEY}` });
      });

      it('headers: --header NAME puts a plain value in that header as it is (MCP servers that want X-API-Key)', async () => {
        for (const args of ['--format headers --header X-API-Key default', '--header=X-API-Key default']) {
          const r = await shimRun(args);
          expect(r.code).toBe(0);
          expect(JSON.parse(r.stdout)).toEqual({ 'X-API-Key': KEY });
        }
      });

      it.each([
        ['a name that is not an HTTP token', '--header "X Key" default'],
        ['no name', 'default --header'],
        ['another format', '--format aws-credentials --header X-API-Key default'],
      ])('--header with %s is a usage error, and nothing is asked', async (_what, args) => {
        const r = await shimRun(args);
        expect(r.code).toBe(ERROR_CODES.USAGE);
        expect(r.stdout).toBe('');
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
      });

      it('headers: a JSON object of strings passes through', async () => {
        expect(JSON.parse((await shimRun('--format=headers headers-json')).stdout)).toEqual({
          'x-honeycomb-team': 'hc-123',
          Authorization: 'Bearer otel',
        });
      });

      it('aws-credentials: wraps credentials the way awsCredentialExport expects', async () => {
        const r = await shimRun('--format aws-credentials aws-json');
        expect(r.code).toBe(0);
        expect(JSON.parse(r.stdout)).toEqual({
          Credentials: {
            AccessKeyId: 'AKIAEXAMPLE',
            SecretAccessKey: 'secret',
            SessionToken: 'tok',
            Expiration: '2026-11-22T12:00:00Z',
          },
        });
      });

      it('aws-credentials: refuses a profile that holds no credentials, without printing it', async () => {
        const r = await shimRun('--format aws-credentials default');
        expect(r.code).toBe(15);
        expect(r.stdout).toBe('');
        expect(r.stderr).not.toContain(KEY);
      });
    });

    describe('autostart', () => {
      it('starts one daemon for many shims arriving together, then answers them all', async () => {
        const dir = privateTempDir('kb-auto-');
        const env = baseEnv(dir, { KEYBROKER_NO_AUTOSTART: '', KB_AUTO_KEY: 'sk-auto' });
        fs.writeFileSync(env.KEYBROKER_CONFIG!, 'profiles:\n  default:\n    source: env:KB_AUTO_KEY\n', {
          mode: 0o600,
        });
        let daemonPid: number | undefined;
        try {
          // (Four racing for the autostart lock: each a Node start, the native shim handing over.)
          const results = await Promise.all(
            Array.from({ length: 4 }, () => run('/bin/sh', ['-c', shellQuote(shim)], { env })),
          );
          for (const r of results) expect(r).toMatchObject({ code: 0, stdout: 'sk-auto\n' });
          expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(8_000);
          const status = (await sendRequest(
            env.KEYBROKER_SOCKET!,
            { v: 1, op: 'status' },
            { timeoutMs: 5_000 },
          )) as StatusReply;
          daemonPid = status.daemon.pid;
          const log = fs.readFileSync(path.join(path.dirname(env.KEYBROKER_SOCKET!), 'daemon.log'), 'utf8');
          expect(log.match(/"msg":"listening"/g)).toHaveLength(1);
          expect(fs.existsSync(path.join(path.dirname(env.KEYBROKER_SOCKET!), 'autostart.lock'))).toBe(false);
        } finally {
          if (daemonPid) process.kill(daemonPid, 'SIGTERM');
          await waitFor(() => !fs.existsSync(env.KEYBROKER_SOCKET!), 5_000, 'autostarted daemon to stop').catch(
            () => {},
          );
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });

      it('says why when the daemon it starts cannot run, well within the deadline', async () => {
        const dir = privateTempDir('kb-auto-');
        // A socket path longer than sun_path allows: the shim can create the directory, the daemon
        // refuses to bind.
        const sockDir = path.join(dir, 'x'.repeat(100));
        const env = baseEnv(dir, { KEYBROKER_NO_AUTOSTART: '', KEYBROKER_SOCKET: path.join(sockDir, 'kb.sock') });
        fs.writeFileSync(env.KEYBROKER_CONFIG!, 'profiles: {}\n', { mode: 0o600 });
        try {
          const r = await run('/bin/sh', ['-c', shellQuote(shim)], { env });
          expect(r.code).toBe(3);
          expect(r.stdout).toBe('');
          // The daemon's own one-line reason and fix, not "see daemon.log".
          expect(r.stderr.trim().split('\n')).toHaveLength(1);
          expect(r.stderr).toContain('longer than 103 bytes'); // the daemon's reason, read from its log
          expect(r.stderr).not.toContain('daemon.log');
          expect(r.ms).toBeLessThan(8_000);
          expect(fs.readFileSync(path.join(sockDir, 'daemon.log'), 'utf8')).toContain('longer than 103 bytes');
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });
    });
  });
});
