// `keybroker setup claude` on a temporary HOME: the library call for each rule, and the built CLI
// end to end (output, exit codes), down to Claude Code's way of running the helper it wrote.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { helperTtlFor, setupClaude, type SetupClaudeOptions } from '../../src/integration/claude-setup.js';
import { helperShim, layoutAt } from '../../src/integration/install-layout.js';
import { CLI, privateTempDir, run, SETUP_SHIM, sharedDaemon, SHIM } from '../helpers/daemon.js';

let home: string;
let project: string;
const NOW = new Date('2026-03-04T05:06:07.890Z');

beforeEach(() => {
  home = privateTempDir('kb-setup-');
  project = path.join(home, 'work', 'repo');
  fs.mkdirSync(project, { recursive: true });
});

const userSettings = (): string => path.join(home, '.claude', 'settings.json');
const readJson = (file: string): Record<string, unknown> =>
  JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
const backups = (file: string): string[] =>
  fs.readdirSync(path.dirname(file)).filter((f) => f.startsWith(`${path.basename(file)}.keybroker-backup-`));

function options(overrides: Partial<SetupClaudeOptions> = {}): SetupClaudeOptions {
  return {
    env: { HOME: home },
    home,
    cwd: project,
    platform: 'linux',
    shim: '/opt/keybroker/dist/src/shim/keybroker-shim.js',
    profile: 'work',
    helper: 'api-key',
    project: false,
    force: false,
    dryRun: false,
    now: NOW,
    profileTtlMs: 15 * 60_000,
    ...overrides,
  };
}

function writeSettings(file: string, text: string, mode = 0o640): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
}

const existing = `{
    "model": "opus",
    "permissions": { "allow": ["Bash(npm test)"], "deny": ["Read(./.env)"] },
    "env": { "DISABLE_TELEMETRY": "1" },
    "hooks": {}
}
`;

describe('setup claude', () => {
  it('adds the helper and the TTL, keeps every other key, backs up first (0600) and keeps the mode', async () => {
    writeSettings(userSettings(), existing, 0o640);
    const result = await setupClaude(options());
    const data = readJson(userSettings());
    expect(data).toEqual({
      model: 'opus',
      permissions: { allow: ['Bash(npm test)'], deny: ['Read(./.env)'] },
      env: { DISABLE_TELEMETRY: '1', CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '300000' },
      hooks: {},
      apiKeyHelper: '/opt/keybroker/dist/src/shim/keybroker-shim.js work',
    });
    expect(Object.keys(data)).toEqual(['model', 'permissions', 'env', 'hooks', 'apiKeyHelper']);
    // The file keeps its own indentation.
    expect(fs.readFileSync(userSettings(), 'utf8')).toMatch(/^\{\n {4}"model"/);
    expect(fs.statSync(userSettings()).mode & 0o777).toBe(0o640);
    expect(result.backup).toBe(`${userSettings()}.keybroker-backup-20260304T050607Z`);
    expect(fs.readFileSync(result.backup!, 'utf8')).toBe(existing);
    expect(fs.statSync(result.backup!).mode & 0o777).toBe(0o600);
    expect(fs.statSync(userSettings()).mode & 0o777).toBe(0o640);
    expect(result.changes.map((c) => c.key)).toEqual(['apiKeyHelper', 'env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS']);
    expect(result.undo).toEqual([`cp ${result.backup} ${userSettings()}`]);
    expect(fs.readdirSync(path.dirname(userSettings())).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('without a profile writes the shim alone: the daemon picks the profile by the project directory', async () => {
    const result = await setupClaude(options({ profile: undefined }));
    expect(readJson(userSettings()).apiKeyHelper).toBe('/opt/keybroker/dist/src/shim/keybroker-shim.js');
    expect(result.changes[0]).toMatchObject({
      key: 'apiKeyHelper',
      before: undefined,
      after: '/opt/keybroker/dist/src/shim/keybroker-shim.js',
    });
  });

  it('rewrites an earlier keybroker helper that named "default", without --force and with a backup', async () => {
    const before = JSON.stringify({
      apiKeyHelper: '/old/place/keybroker-shim default',
      env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '300000' },
    });
    writeSettings(userSettings(), before);
    const result = await setupClaude(options({ profile: undefined }));
    expect(readJson(userSettings()).apiKeyHelper).toBe('/opt/keybroker/dist/src/shim/keybroker-shim.js');
    expect(result.changes).toEqual([
      {
        key: 'apiKeyHelper',
        before: '/old/place/keybroker-shim default',
        after: '/opt/keybroker/dist/src/shim/keybroker-shim.js',
      },
    ]);
    expect(fs.readFileSync(result.backup!, 'utf8')).toBe(before);
  });

  it('leaves a keybroker helper that names another profile unless forced', async () => {
    writeSettings(userSettings(), JSON.stringify({ apiKeyHelper: '/old/place/keybroker-shim work' }));
    const err = await setupClaude(options({ profile: undefined })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('USAGE');
    expect(readJson(userSettings()).apiKeyHelper).toBe('/old/place/keybroker-shim work');
    // The same profile from a shim that moved is ours to update.
    await setupClaude(options({ profile: 'work' }));
    expect(readJson(userSettings()).apiKeyHelper).toBe('/opt/keybroker/dist/src/shim/keybroker-shim.js work');
  });

  it('changes nothing and writes no backup on a second run', async () => {
    writeSettings(userSettings(), existing);
    await setupClaude(options());
    const after = fs.readFileSync(userSettings(), 'utf8');
    const again = await setupClaude(options({ now: new Date(NOW.getTime() + 60_000) }));
    expect(again).toMatchObject({ changes: [], written: false, backup: undefined });
    expect(fs.readFileSync(userSettings(), 'utf8')).toBe(after);
    expect(backups(userSettings())).toHaveLength(1);
  });

  it('refuses to replace a different helper without --force, and never prints its arguments', async () => {
    const foreign = JSON.stringify({ apiKeyHelper: 'echo sk-ant-foreign-secret-31', model: 'sonnet' }, null, 2);
    writeSettings(userSettings(), foreign);
    const err = await setupClaude(options()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('USAGE');
    expect((err as BrokerError).message).toContain('already sets apiKeyHelper to another helper (echo …)');
    expect((err as BrokerError).message).toContain('--force');
    expect((err as BrokerError).message).not.toContain('sk-ant-foreign-secret-31');
    expect(fs.readFileSync(userSettings(), 'utf8')).toBe(foreign);
    expect(backups(userSettings())).toEqual([]);

    const forced = await setupClaude(options({ force: true }));
    expect(readJson(userSettings()).apiKeyHelper).toBe('/opt/keybroker/dist/src/shim/keybroker-shim.js work');
    expect(forced.changes[0]).toEqual({
      key: 'apiKeyHelper',
      before: 'echo …',
      after: '/opt/keybroker/dist/src/shim/keybroker-shim.js work',
    });
    expect(fs.readFileSync(forced.backup!, 'utf8')).toBe(foreign);
  });

  it("treats keybroker's own shim with another profile as an update, not another helper", async () => {
    await setupClaude(options({ profile: 'default' }));
    const before = fs.readFileSync(userSettings(), 'utf8');
    const result = await setupClaude(options({ profile: 'work' }));
    expect(result.written).toBe(true);
    expect(result.changes[0]).toEqual({
      key: 'apiKeyHelper',
      before: '/opt/keybroker/dist/src/shim/keybroker-shim.js default',
      after: '/opt/keybroker/dist/src/shim/keybroker-shim.js work',
    });
    expect(readJson(userSettings()).apiKeyHelper).toBe('/opt/keybroker/dist/src/shim/keybroker-shim.js work');
    expect(fs.readFileSync(result.backup!, 'utf8')).toBe(before);
    // Also from another install of keybroker (a moved checkout).
    writeSettings(userSettings(), JSON.stringify({ apiKeyHelper: 'node /old/place/keybroker-shim.cjs work' }));
    expect((await setupClaude(options())).written).toBe(true);
  });

  it('creates a missing settings file (mode 0600) and says the undo is to remove it', async () => {
    const result = await setupClaude(options({ profileTtlMs: 2 * 60_000 }));
    expect(result.created).toBe(true);
    expect(readJson(userSettings())).toEqual({
      apiKeyHelper: '/opt/keybroker/dist/src/shim/keybroker-shim.js work',
      env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '60000' },
    });
    expect(fs.statSync(userSettings()).mode & 0o777).toBe(0o600);
    expect(result.undo).toEqual([`rm ${userSettings()}`]);
  });

  it('refuses a file it cannot parse, without quoting it', async () => {
    writeSettings(userSettings(), '{ "env": { "ANTHROPIC_API_KEY": "sk-ant-in-broken-json" }, }');
    const err = (await setupClaude(options()).catch((e: unknown) => e)) as BrokerError;
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('is not valid JSON');
    expect(err.message).not.toContain('sk-ant-in-broken-json');
  });

  it('writes the project settings with --project, and warns about workspace trust', async () => {
    const result = await setupClaude(options({ project: true }));
    expect(result.file).toBe(path.join(project, '.claude', 'settings.json'));
    expect(readJson(result.file).apiKeyHelper).toContain('keybroker-shim.js work');
    expect(fs.existsSync(userSettings())).toBe(false);
    expect(result.warnings.join('\n')).toContain('workspace trust dialog');
  });

  it('follows CLAUDE_CONFIG_DIR, and a symlinked settings file stays a symlink', async () => {
    const dotfiles = path.join(home, 'dotfiles');
    const configDir = path.join(home, 'claude-config');
    writeSettings(path.join(dotfiles, 'claude.json'), '{"model":"opus"}\n', 0o644);
    fs.mkdirSync(configDir);
    fs.symlinkSync(path.join(dotfiles, 'claude.json'), path.join(configDir, 'settings.json'));
    const result = await setupClaude(options({ env: { HOME: home, CLAUDE_CONFIG_DIR: configDir } }));
    expect(fs.lstatSync(path.join(configDir, 'settings.json')).isSymbolicLink()).toBe(true);
    expect(readJson(path.join(dotfiles, 'claude.json'))).toMatchObject({
      model: 'opus',
      apiKeyHelper: expect.stringContaining('keybroker-shim.js work'),
    });
    expect(fs.statSync(path.join(dotfiles, 'claude.json')).mode & 0o777).toBe(0o644);
    expect(result.backup).toContain(path.join(dotfiles, 'claude.json.keybroker-backup-'));
  });

  it("sets awsCredentialExport and otelHeadersHelper with the shim's formats, without touching the TTL", async () => {
    await setupClaude(options({ helper: 'aws-credentials', profile: 'bedrock' }));
    await setupClaude(options({ helper: 'otel-headers', profile: 'otel' }));
    expect(readJson(userSettings())).toEqual({
      awsCredentialExport: '/opt/keybroker/dist/src/shim/keybroker-shim.js --format aws-credentials bedrock',
      otelHeadersHelper: '/opt/keybroker/dist/src/shim/keybroker-shim.js --format headers otel',
    });
  });

  it('quotes a shim path with spaces for the shell Claude Code runs it in', async () => {
    await setupClaude(options({ shim: "/Users/ada/My Tools/ada's keybroker/keybroker-shim.js" }));
    expect(readJson(userSettings()).apiKeyHelper).toBe(
      `'/Users/ada/My Tools/ada'\\''s keybroker/keybroker-shim.js' work`,
    );
  });

  it('warns about what would shadow the helper, and changes nothing on a dry run', async () => {
    writeSettings(userSettings(), JSON.stringify({ env: { ANTHROPIC_API_KEY: 'sk-ant-in-env-block' } }));
    const result = await setupClaude(options({ dryRun: true, env: { HOME: home, CLAUDE_CODE_USE_BEDROCK: '1' } }));
    expect(result.written).toBe(false);
    expect(result.changes).toHaveLength(2);
    expect(readJson(userSettings())).toEqual({ env: { ANTHROPIC_API_KEY: 'sk-ant-in-env-block' } });
    const warnings = result.warnings.join('\n');
    expect(warnings).toContain("this file's env block sets ANTHROPIC_API_KEY");
    expect(warnings).toContain('CLAUDE_CODE_USE_BEDROCK is set');
    expect(warnings).not.toContain('sk-ant-in-env-block');
  });

  it.each([
    [15 * 60_000, 300_000],
    [8 * 60_000, 240_000],
    [60_000, 30_000],
    [5_000, 10_000],
    [24 * 60 * 60_000, 300_000],
  ])('fits the helper TTL to a profile TTL of %i ms: %i ms', (ttl, expected) => {
    expect(helperTtlFor(ttl)).toBe(expected);
  });
});

describe('which shim setup writes', () => {
  it('the native shim for apiKeyHelper when it is built and executable, else the Node shim', () => {
    const layout = layoutAt(home);
    expect(helperShim(layout, 'api-key')).toBe(layout.shim);
    fs.mkdirSync(path.dirname(layout.nativeShim), { recursive: true });
    fs.writeFileSync(layout.nativeShim, '', { mode: 0o644 });
    expect(helperShim(layout, 'api-key')).toBe(layout.shim);
    fs.chmodSync(layout.nativeShim, 0o755);
    expect(helperShim(layout, 'api-key')).toBe(layout.nativeShim);
  });

  it('the Node shim for the --format helpers, which the native shim would only hand over to it', () => {
    const layout = layoutAt(home);
    fs.mkdirSync(path.dirname(layout.nativeShim), { recursive: true });
    fs.writeFileSync(layout.nativeShim, '', { mode: 0o755 });
    expect(helperShim(layout, 'aws-credentials')).toBe(layout.shim);
    expect(helperShim(layout, 'otel-headers')).toBe(layout.shim);
  });
});

describe('setup claude through the CLI', () => {
  // One daemon for the tests that run a helper against one: each writes its own settings under its
  // own home, and only reads keys from it. "default" serves outside ~/work (the daemon's HOME).
  const daemon = sharedDaemon({
    config:
      'directories:\n  ~/work: work\nprofiles:\n  default:\n    source: env:KB_SETUP_DEFAULT\n    ttl: 10m\n  work:\n    source: env:KB_SETUP_KEY\n    ttl: 4m\n',
    env: { KB_SETUP_KEY: 'sk-setup-work-5d2', KB_SETUP_DEFAULT: 'sk-setup-default-5d2' },
  });

  it('wires Claude Code to a running daemon: the helper it writes prints the key', async () => {
    const env = { ...daemon.env, HOME: home };
    const first = await run(process.execPath, [CLI, 'setup', 'claude', '--profile', 'work'], { env, cwd: project });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`apiKeyHelper: (unset) -> ${SETUP_SHIM} work`);
    expect(first.stdout).toContain('env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS: (unset) -> 120000');
    expect(first.stdout).toContain('undo: rm ');
    const settings = readJson(userSettings());
    // Claude Code runs the helper through sh -c and uses its trimmed stdout.
    const helper = await run('/bin/sh', ['-c', settings.apiKeyHelper as string], { env });
    expect(helper.stdout.trim()).toBe('sk-setup-work-5d2');

    const second = await run(process.execPath, [CLI, 'setup', 'claude', '--profile', 'work'], { env, cwd: project });
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('nothing to change');

    const other = await run(process.execPath, [CLI, 'setup', 'claude', '--profile', 'nope'], { env, cwd: project });
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('no profile "nope"');
    expect(other.stderr).toContain('(profiles: default, work)');
  });

  it('without --profile, a helper that named "default" becomes one that follows the directory, and it serves the mapped profile', async () => {
    const env = { ...daemon.env, HOME: home };
    writeSettings(userSettings(), JSON.stringify({ apiKeyHelper: `${SHIM} default` }));
    const result = await run(process.execPath, [CLI, 'setup', 'claude'], { env, cwd: project });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`apiKeyHelper: ${SHIM} default -> ${SETUP_SHIM}\n`);
    // The shortest TTL of default (10m) and work (4m), halved.
    expect(result.stdout).toContain('env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS: (unset) -> 120000');
    expect(result.stdout).toMatch(/^backup: /m);
    const helper = readJson(userSettings()).apiKeyHelper as string;
    expect(helper).toBe(SETUP_SHIM);
    // The daemon resolved ~/work against its own HOME: run the helper from the project there.
    fs.mkdirSync(path.join(daemon.dir, 'work', 'repo'), { recursive: true });
    expect(
      (await run('/bin/sh', ['-c', helper], { env: daemon.env, cwd: path.join(daemon.dir, 'work', 'repo') })).stdout,
    ).toBe('sk-setup-work-5d2\n');
    expect((await run('/bin/sh', ['-c', helper], { env: daemon.env, cwd: daemon.dir })).stdout).toBe(
      'sk-setup-default-5d2\n',
    );
  });

  it('exits 2 and leaves the file alone when another helper is set', async () => {
    writeSettings(userSettings(), JSON.stringify({ apiKeyHelper: 'op read op://Private/Anthropic/credential' }));
    const dir = privateTempDir('kb-setup-cfg-');
    const result = await run(process.execPath, [CLI, 'setup', 'claude'], {
      env: { PATH: process.env.PATH, HOME: home, KEYBROKER_CONFIG: path.join(dir, 'none.yaml') },
      cwd: project,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('already sets apiKeyHelper to another helper (op …); rerun with --force');
    expect(result.stderr).not.toContain('op://Private');
    expect(readJson(userSettings())).toEqual({ apiKeyHelper: 'op read op://Private/Anthropic/credential' });
  });

  it('--force over a helper that held a literal key leaves a 0600 backup, even from a 0644 file', async () => {
    const foreign = JSON.stringify({ apiKeyHelper: 'echo sk-ant-literal-key-0644' });
    writeSettings(userSettings(), foreign, 0o644);
    const dir = privateTempDir('kb-setup-cfg-');
    const env = { PATH: process.env.PATH, HOME: home, KEYBROKER_CONFIG: path.join(dir, 'none.yaml') };
    const result = await run(process.execPath, [CLI, 'setup', 'claude', '--force'], { env, cwd: project });
    expect(result.code).toBe(0);
    const [backup] = backups(userSettings());
    const file = path.join(path.dirname(userSettings()), backup!);
    expect(fs.readFileSync(file, 'utf8')).toBe(foreign);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(result.stdout + result.stderr).not.toContain('sk-ant-literal-key-0644');
  });

  it('refuses a settings.json that is a FIFO at once, with CONFIG_INVALID (exit 8), instead of hanging', async () => {
    fs.mkdirSync(path.dirname(userSettings()), { recursive: true });
    execFileSync('mkfifo', [userSettings()]);
    const dir = privateTempDir('kb-setup-cfg-');
    const env = { PATH: process.env.PATH, HOME: home, KEYBROKER_CONFIG: path.join(dir, 'none.yaml') };
    const result = await run(process.execPath, [CLI, 'setup', 'claude'], { env, cwd: project, timeoutMs: 10_000 });
    expect(result.code).toBe(8);
    expect(result.ms).toBeLessThan(9_000);
    expect(fs.statSync(userSettings()).isFIFO()).toBe(true);
    expect(backups(userSettings())).toEqual([]);
    // doctor reads the same file: it reports it and finishes.
    const doctor = await run(process.execPath, [CLI, 'doctor'], {
      env: { ...env, KEYBROKER_NO_AUTOSTART: '1', KEYBROKER_SOCKET: path.join(dir, 'no.sock') },
      cwd: project,
      timeoutMs: 10_000,
    });
    expect(doctor.code).not.toBeNull();
    expect(doctor.stdout).toContain('is not a regular file');
  });
});
