// A known secret goes through every path the daemon has — fetch, cache hit, refresh, stale
// serving, a suspected rejection, status, errors, reload, shutdown — at trace level. Its bytes
// must appear nowhere but on the shim's stdout: not in the log, the CLI's output or the audit trail.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SHIMS, startDaemon, waitFor, type DaemonHandle, type RunResult, shellQuote } from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';
import { makeJwt } from '../helpers/jwt.js';

const SECRET = 'sk-ant-api03-NEVER-LOG-ME-9f8e7d6c5b4a';
const encodings = (s: string): string[] => [
  s,
  Buffer.from(s).toString('base64'),
  Buffer.from(s).toString('hex'),
  s.slice(8, 28),
];
// A gateway token: decoded by the cache for its exp, so its parts must not surface either.
const JWT = makeJwt({
  sub: 'NEVER-LOG-ME-subject',
  iat: Math.floor(Date.now() / 1000),
  exp: Math.floor(Date.now() / 1000) + 3_600,
});
const jwtForms = (t: string): string[] => [
  t,
  ...t.split('.'),
  Buffer.from(t.split('.')[1]!, 'base64url').toString(),
  'NEVER-LOG-ME-subject',
];

describe.each(SHIMS)('$name shim', ({ path: shim, skip }) => {
  describe.skipIf(skip !== undefined)(skip ?? 'with a real daemon', () => {
    let d: DaemonHandle;
    const shimRun = (args = '', env: NodeJS.ProcessEnv = {}): Promise<RunResult> => d.shim(args, env, shim);
    const outputs: string[] = [];

    beforeAll(async () => {
      d = await startDaemon({
        logLevel: 'trace',
        config: [
          'profiles:',
          '  default:',
          '    source: exec:cat ./key',
          '    ttl: 1s',
          '  env:',
          '    source: env:KB_SECRET',
          '  headers:',
          '    source: env:KB_SECRET',
          '  gateway:',
          '    source: exec:cat ./token.json',
          '    output: json',
          '  badjson:',
          '    source: exec:cat ./bad.json',
          '    output: json',
        ].join('\n'),
        env: { KB_SECRET: SECRET },
      });
      fs.writeFileSync(path.join(d.dir, 'key'), SECRET);
      fs.writeFileSync(
        path.join(d.dir, 'token.json'),
        JSON.stringify({ value: JWT, expiresAt: new Date(Date.now() + 7_200_000).toISOString() }),
      );
      // Output that is not the JSON asked for, with the secret in it: the error must not quote it.
      fs.writeFileSync(path.join(d.dir, 'bad.json'), `{"value": "${SECRET}", "expiresAt": "tomorrow"}`);
    });

    describe('no secret value outside the reply', () => {
      it('runs every path, then finds the value nowhere in logs, status or errors', async () => {
        // Served: a miss, then hits.
        expect((await shimRun()).stdout).toBe(`${SECRET}\n`);
        expect((await shimRun('env')).stdout).toBe(`${SECRET}\n`);
        expect((await shimRun('--format headers headers')).code).toBe(0);
        expect((await shimRun('gateway')).stdout).toBe(`${JWT}\n`);
        const bad = await shimRun('badjson');
        expect(bad.code).toBe(15); // INVALID_VALUE
        outputs.push(bad.stderr);
        // A refresh, explicit and via the shim.
        outputs.push(JSON.stringify(await d.cli(['refresh', '--all'])));
        expect((await shimRun('--refresh')).stdout).toBe(`${SECRET}\n`);
        // A suspected rejection from a Claude Code session, then the failure.
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
        for (let i = 0; i < 3; i++)
          outputs.push(JSON.stringify({ ...(await claude.callHelper(`${shellQuote(shim)} env`)), stdout: '' }));
        claude.close();
        expect(outputs.at(-1)).toContain('the key was rejected');
        // The source fails: stale serving with a warning, then errors.
        fs.writeFileSync(path.join(d.dir, 'key'), '');
        await new Promise((r) => setTimeout(r, 1_100));
        const stale = await shimRun();
        expect(stale.stdout).toBe(`${SECRET}\n`);
        outputs.push(stale.stderr);
        // Wrong uses that echo input back.
        outputs.push(JSON.stringify(await shimRun('--format aws-credentials env')));
        outputs.push(JSON.stringify(await d.request({ v: 1, op: 'get', profile: 'nope' })));
        // Status in both forms.
        outputs.push((await d.cli(['status'])).stdout);
        outputs.push((await d.cli(['status', '--json'])).stdout);
        // A reload, a bad reload, and a shutdown.
        d.signal('SIGHUP');
        await waitFor(() => d.log().includes('config reloaded'), 5_000, 'reload');
        d.writeConfig('profiles:\n  default:\n    source: exec:cat ./key\n    ttl: nope\n');
        d.signal('SIGHUP');
        await waitFor(() => d.log().includes('config reload failed'), 5_000, 'failed reload');
        expect(await d.stop()).toBe(0);

        const log = d.log();
        expect(log).toContain('"level":10'); // trace lines were written
        expect(log).toContain('"msg":"fetched"');
        // The value did reach the logger (whole replies are traced), and came out redacted.
        expect(log).toContain('"value":"[redacted]"');
        expect(log).toContain('"expiryFrom":"jwt"'); // the JWT was decoded
        // The audit trail saw every one of those requests (written at shutdown at the latest).
        const audit = fs.readFileSync(path.join(d.env.XDG_STATE_HOME!, 'keybroker', 'audit.jsonl'), 'utf8');
        expect(audit.split('\n').length).toBeGreaterThan(8);
        outputs.push(audit, (await d.cli(['audit'])).stdout, (await d.cli(['audit', '--json'])).stdout);
        for (const text of [log, ...outputs]) {
          for (const form of encodings(SECRET)) expect(text).not.toContain(form);
          for (const form of jwtForms(JWT)) expect(text).not.toContain(form);
        }
      });
    });
  });
});
