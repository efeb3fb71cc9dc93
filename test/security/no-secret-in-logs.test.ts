// A known secret goes through every path the daemon has — fetch, cache hit, refresh, stale
// serving, a suspected rejection, status, errors, reload, shutdown — at trace level, asked by each
// shim. Its bytes must appear nowhere but on the shim's stdout: not in the log, the CLI's output or
// the audit trail.
//
// One daemon serves both shims (each a daemon and the CLI's five runs fewer, ~2 s of CPU): each
// shim has its own profiles where a path leaves state behind (the stale key, the rejection), and
// the CLI's status, refresh and audit run once, over what both shims' requests left.
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

/** The shims built here (the native one where a C compiler was found: see SHIMS). */
const ACTIVE = SHIMS.filter((s) => s.skip === undefined);

describe('no secret value outside the reply', () => {
  let d: DaemonHandle;
  const outputs: string[] = [];

  beforeAll(async () => {
    d = await startDaemon({
      logLevel: 'trace',
      config: [
        'profiles:',
        '  default:',
        '    source: env:KB_SECRET',
        '  headers:',
        '    source: env:KB_SECRET',
        '  gateway:',
        '    source: exec:cat ./token.json',
        '    output: json',
        '  badjson:',
        '    source: exec:cat ./bad.json',
        '    output: json',
        // Per shim: a key that goes stale, and a profile the fake Claude Code rejects.
        ...SHIMS.flatMap((s) => [
          `  key-${s.name}:`,
          `    source: exec:cat ./key-${s.name}`,
          '    ttl: 1s',
          `  env-${s.name}:`,
          '    source: env:KB_SECRET',
        ]),
      ].join('\n'),
      env: { KB_SECRET: SECRET },
    });
    for (const s of SHIMS) fs.writeFileSync(path.join(d.dir, `key-${s.name}`), SECRET);
    fs.writeFileSync(
      path.join(d.dir, 'token.json'),
      JSON.stringify({ value: JWT, expiresAt: new Date(Date.now() + 7_200_000).toISOString() }),
    );
    // Output that is not the JSON asked for, with the secret in it: the error must not quote it.
    fs.writeFileSync(path.join(d.dir, 'bad.json'), `{"value": "${SECRET}", "expiresAt": "tomorrow"}`);
  });

  it(`runs every path with each shim (${ACTIVE.map((s) => s.name).join(', ')}), then finds the value nowhere in logs, status or errors`, async () => {
    const shimRun = (s: (typeof SHIMS)[number], args: string): Promise<RunResult> => d.shim(args, {}, s.path);
    for (const s of ACTIVE) {
      // Served: a miss, then hits.
      expect((await shimRun(s, '')).stdout, s.name).toBe(`${SECRET}\n`);
      expect((await shimRun(s, `key-${s.name}`)).stdout, s.name).toBe(`${SECRET}\n`);
      expect((await shimRun(s, `env-${s.name}`)).stdout, s.name).toBe(`${SECRET}\n`);
      expect((await shimRun(s, '--format headers headers')).code, s.name).toBe(0);
      expect((await shimRun(s, 'gateway')).stdout, s.name).toBe(`${JWT}\n`);
      const bad = await shimRun(s, 'badjson');
      expect(bad.code, s.name).toBe(15); // INVALID_VALUE
      outputs.push(bad.stderr);
    }
    // A refresh, explicit and via each shim.
    outputs.push(JSON.stringify(await d.cli(['refresh', '--all'])));
    for (const s of ACTIVE) expect((await shimRun(s, `--refresh key-${s.name}`)).stdout, s.name).toBe(`${SECRET}\n`);
    // A suspected rejection from a Claude Code session, then the failure: each shim on its profile.
    const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
    for (const s of ACTIVE) {
      for (let i = 0; i < 3; i++)
        outputs.push(
          JSON.stringify({ ...(await claude.callHelper(`${shellQuote(s.path)} env-${s.name}`)), stdout: '' }),
        );
      expect(outputs.at(-1), s.name).toContain('the key was rejected');
    }
    claude.close();
    // The source fails: stale serving with a warning, then errors.
    for (const s of ACTIVE) fs.writeFileSync(path.join(d.dir, `key-${s.name}`), '');
    await new Promise((r) => setTimeout(r, 1_100));
    for (const s of ACTIVE) {
      const stale = await shimRun(s, `key-${s.name}`);
      expect(stale.stdout, s.name).toBe(`${SECRET}\n`);
      outputs.push(stale.stderr);
      // Wrong uses that echo input back.
      outputs.push(JSON.stringify(await shimRun(s, `--format aws-credentials env-${s.name}`)));
    }
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
    expect(audit.split('\n').length).toBeGreaterThan(8 * ACTIVE.length);
    outputs.push(audit, (await d.cli(['audit'])).stdout, (await d.cli(['audit', '--json'])).stdout);
    for (const text of [log, ...outputs]) {
      for (const form of encodings(SECRET)) expect(text).not.toContain(form);
      for (const form of jwtForms(JWT)) expect(text).not.toContain(form);
    }
  });
});
