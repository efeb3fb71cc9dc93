// `keybroker doctor`'s Codex checks over temporary Codex configs: found or not, the provider Codex
// uses and whether it runs the shim, what Codex refuses beside an auth command, the refresh
// interval the shim is told; then the built CLI. No report may print a secret planted in the file.
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { codexChecks } from '../../src/integration/codex-doctor.js';
import type { CheckStatus, DoctorCheck } from '../../src/integration/doctor.js';
import { CLI, privateTempDir, run, SHIM } from '../helpers/daemon.js';

const SECRET = 'codex-doctor-secret';
const PROFILES = [{ name: 'work', source: 'env:X', scheme: 'env', ttlMs: 600_000, timeoutMs: 8_000 }];

let home: string;
beforeEach(() => {
  home = privateTempDir('kb-codex-doctor-');
});

function writeCodexConfig(text: string): void {
  fs.mkdirSync(path.join(home, '.codex'), { recursive: true });
  fs.writeFileSync(path.join(home, '.codex', 'config.toml'), text);
}

const provider = (auth: string, extra = ''): string =>
  `model_provider = "kb"\n[model_providers.kb]\nname = "kb"\nbase_url = "http://127.0.0.1:9/v1"\n${extra}auth = ${auth}\n`;
const ours = (args: string, more = ', refresh_interval_ms = 300000'): string =>
  `{ command = "${SHIM}", args = [${args}]${more} }`;

async function checks(env: NodeJS.ProcessEnv = {}): Promise<Record<string, DoctorCheck>> {
  const list = await codexChecks({ env: { PATH: path.dirname(process.execPath), ...env }, home, profiles: PROFILES });
  const text = JSON.stringify(list);
  expect(text).not.toContain(SECRET);
  return Object.fromEntries(list.map((c) => [c.id, c]));
}

const statuses = (found: Record<string, DoctorCheck>): Record<string, CheckStatus> =>
  Object.fromEntries(Object.entries(found).map(([id, c]) => [id, c.status]));

describe('doctor’s Codex checks', () => {
  it('say nothing where Codex is neither configured nor installed', async () => {
    expect(await checks()).toEqual({});
  });

  it('warn when codex is on PATH but has no config', async () => {
    const bin = path.join(home, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'codex'), '#!/bin/sh\n', { mode: 0o755 });
    expect(statuses(await checks({ PATH: bin }))).toEqual({ 'codex-config': 'warn' });
  });

  it('are content with what setup codex writes; CODEX_HOME is followed', async () => {
    writeCodexConfig(provider(ours('"--refresh-interval-ms", "300000", "work"')));
    const found = await checks();
    expect(statuses(found)).toEqual({ 'codex-config': 'ok', 'codex-auth': 'ok' });
    expect(found['codex-auth']!.message).toContain('profile "work"');
    fs.renameSync(path.join(home, '.codex'), path.join(home, 'elsewhere'));
    expect(await checks({ CODEX_HOME: path.join(home, 'elsewhere') })).toMatchObject({
      'codex-auth': { status: 'ok' },
    });
  });

  it.each([
    [
      'env_key beside the auth command (Codex refuses to start)',
      provider(ours('"--refresh-interval-ms", "300000"'), 'env_key = "KB_KEY"\n'),
      { 'codex-config': 'ok', 'codex-auth': 'fail' },
    ],
    [
      'a bearer token beside it',
      provider(ours('"--refresh-interval-ms", "300000"'), `experimental_bearer_token = "${SECRET}"\n`),
      { 'codex-config': 'ok', 'codex-auth': 'fail' },
    ],
    [
      'no --refresh-interval-ms: a 401 is not recognised',
      provider(ours('"work"')),
      { 'codex-config': 'ok', 'codex-auth': 'ok', 'codex-refresh': 'warn' },
    ],
    [
      'an interval the shim is told that is not Codex’s',
      provider(ours('"--refresh-interval-ms", "60000"', '')),
      { 'codex-config': 'ok', 'codex-auth': 'ok', 'codex-refresh': 'warn' },
    ],
    [
      'a profile the keybroker config does not have',
      provider(ours('"--refresh-interval-ms", "300000", "nope"')),
      { 'codex-config': 'ok', 'codex-auth': 'ok', 'codex-profile': 'fail' },
    ],
    [
      'a shim that is not there',
      provider(`{ command = "/nowhere/keybroker-shim", args = ["--refresh-interval-ms", "300000"] }`),
      { 'codex-config': 'ok', 'codex-auth': 'fail' },
    ],
    [
      'another auth command (its arguments never shown)',
      provider(`{ command = "/usr/bin/get-key", args = ["${SECRET}"] }`),
      { 'codex-config': 'ok', 'codex-auth': 'warn' },
    ],
    [
      'Codex’s built-in provider, with keybroker’s set up on another',
      `model_provider = "openai"\n[model_providers.kb]\nauth = ${ours('"--refresh-interval-ms", "300000"')}\n`,
      { 'codex-config': 'ok', 'codex-auth': 'warn' },
    ],
    [
      'a provider model_provider names but the file does not define',
      'model_provider = "gone"\n',
      { 'codex-config': 'ok', 'codex-auth': 'fail' },
    ],
    ['a file that is not TOML', `model_provider = "kb"\nsecret = ${SECRET}\n`, { 'codex-config': 'fail' }],
  ])('%s', async (_what, text, expected) => {
    writeCodexConfig(text);
    expect(statuses(await checks())).toEqual(expected);
  });

  it('run through the built CLI: keybroker doctor --json lists them', async () => {
    writeCodexConfig(provider(ours('"--refresh-interval-ms", "300000"'), 'env_key = "KB_KEY"\n'));
    const env = { HOME: home, PATH: process.env.PATH, XDG_RUNTIME_DIR: path.join(home, 'run') };
    const r = await run(process.execPath, [CLI, 'doctor', '--json', '--no-fetch'], { env, cwd: home });
    expect(r.code).toBe(1);
    const found = (JSON.parse(r.stdout) as DoctorCheck[]).filter((c) => c.id.startsWith('codex'));
    expect(found.map((c) => [c.id, c.status])).toEqual([
      ['codex-config', 'ok'],
      ['codex-auth', 'fail'],
    ]);
  });
});
