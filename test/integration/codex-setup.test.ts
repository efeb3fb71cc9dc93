// `keybroker setup codex` on a temporary CODEX_HOME: the library call for each rule, and the
// built CLI end to end (output, exit codes, a second run that changes nothing, byte for byte).
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from '@decimalturn/toml-patch';
import { beforeEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { setupCodex, type SetupCodexOptions } from '../../src/integration/codex-setup.js';
import { CLI, NATIVE_SHIM, privateTempDir, run, SHIM, SHIMS } from '../helpers/daemon.js';

/** What setup writes: the native fast path where this machine built one, else the Node shim. */
const SETUP_SHIM = SHIMS.find((s) => s.name === 'native')!.skip === undefined ? NATIVE_SHIM : SHIM;
const NOW = new Date('2026-03-04T05:06:07.890Z');
const SHIM_PATH = '/opt/keybroker/dist/native/keybroker-shim';

let home: string;
let codexHome: string;
beforeEach(() => {
  home = privateTempDir('kb-codex-setup-');
  codexHome = path.join(home, '.codex');
});

const configFile = (): string => path.join(codexHome, 'config.toml');
const read = (): string => fs.readFileSync(configFile(), 'utf8');
const backups = (): string[] => fs.readdirSync(codexHome).filter((f) => f.startsWith('config.toml.keybroker-backup-'));
type Table = Record<string, Record<string, Record<string, unknown>>>;
const providers = (): Table['model_providers'] => (parseToml(read()) as Table).model_providers!;

function writeConfig(text: string, mode = 0o640): void {
  fs.mkdirSync(codexHome, { recursive: true });
  fs.writeFileSync(configFile(), text, { mode });
  fs.chmodSync(configFile(), mode);
}

function options(overrides: Partial<SetupCodexOptions> = {}): SetupCodexOptions {
  return {
    env: { HOME: home },
    home,
    shim: SHIM_PATH,
    provider: undefined,
    profile: 'work',
    force: false,
    dryRun: false,
    now: NOW,
    profileTtlMs: 15 * 60_000,
    profileTimeoutMs: 8_000,
    ...overrides,
  };
}

const EXISTING = `# Codex, as I like it
model_provider = "acme"   # our gateway
model = "gpt-5.1"
approval_policy = "on-request"

[model_providers.acme]
name = "Acme gateway"
base_url = "https://llm.acme.example/v1"
wire_api = "responses"
http_headers = { "X-Team" = "platform" }

[profiles.fast]
model = "o3"

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"]
`;

/** The lines of `text` that setup added (the file is otherwise unchanged, byte for byte). */
function added(before: string, after: string): string[] {
  const old = new Set(before.split('\n'));
  return after.split('\n').filter((l) => !old.has(l));
}

describe('setup codex', () => {
  it('adds the auth table to the provider model_provider names, keeps every other line, backs up first (0600), keeps the mode', async () => {
    writeConfig(EXISTING, 0o640);
    const result = await setupCodex(options());
    expect(result.provider).toBe('acme');
    expect(added(EXISTING, read())).toHaveLength(1);
    expect(
      read()
        .split('\n')
        .filter((l) => !added(EXISTING, read()).includes(l)),
    ).toEqual(EXISTING.split('\n'));
    expect(providers().acme!.auth).toEqual({
      command: SHIM_PATH,
      args: ['--refresh-interval-ms', '300000', 'work'],
      timeout_ms: 18_000,
      refresh_interval_ms: 300_000,
    });
    expect(fs.statSync(configFile()).mode & 0o777).toBe(0o640);
    expect(result.backup).toBe(`${configFile()}.keybroker-backup-20260304T050607Z`);
    expect(fs.readFileSync(result.backup!, 'utf8')).toBe(EXISTING);
    expect(fs.statSync(result.backup!).mode & 0o777).toBe(0o600);
    expect(result.undo).toEqual([`cp ${result.backup} ${configFile()}`]);
    expect(result.warnings).toEqual([]);
  });

  it('changes nothing, byte for byte, and writes no backup on a second run', async () => {
    writeConfig(EXISTING);
    await setupCodex(options());
    const first = read();
    const again = await setupCodex(options({ now: new Date(NOW.getTime() + 5_000) }));
    expect(again).toMatchObject({ changes: [], written: false, backup: undefined });
    expect(read()).toBe(first);
    expect(backups()).toHaveLength(1);
  });

  it('fits the refresh interval to the profile’s TTL (half, at most 5 minutes) and passes it to the shim too', async () => {
    writeConfig(EXISTING);
    await setupCodex(options({ profileTtlMs: 60_000, profileTimeoutMs: 20_000, profile: undefined }));
    expect(providers().acme!.auth).toMatchObject({
      args: ['--refresh-interval-ms', '30000'],
      refresh_interval_ms: 30_000,
      timeout_ms: 30_000,
    });
  });

  it('follows CODEX_HOME, creates a missing file (0600) for --provider, and says the undo is to remove it', async () => {
    codexHome = path.join(home, 'elsewhere');
    const result = await setupCodex(options({ env: { CODEX_HOME: codexHome }, provider: 'mine' }));
    expect(result.created).toBe(true);
    expect(fs.statSync(configFile()).mode & 0o777).toBe(0o600);
    expect(providers().mine).toMatchObject({ name: 'mine', auth: { command: SHIM_PATH } });
    expect(result.undo).toEqual([`rm ${configFile()}`]);
    // Codex uses it only once model_provider names it.
    expect(result.warnings.some((w) => w.includes('model_provider = "mine"'))).toBe(true);
  });

  it.each([
    ['no model_provider and no --provider', 'model = "gpt-5.1"\n', {}],
    ['a built-in provider', 'model_provider = "openai"\n', {}],
    ['a built-in provider named with --provider', EXISTING, { provider: 'ollama' }],
    ['a provider name TOML would need quoted', EXISTING, { provider: 'my provider' }],
  ])('refuses %s with USAGE, and writes nothing', async (_what, text, flags) => {
    writeConfig(text);
    await expect(setupCodex(options(flags))).rejects.toMatchObject({ code: 'USAGE' });
    expect(read()).toBe(text);
    expect(backups()).toEqual([]);
  });

  it('refuses a provider with env_key or a bearer token unless forced (Codex refuses them beside auth), never printing the token', async () => {
    const text = EXISTING.replace(
      'wire_api = "responses"\n',
      'wire_api = "responses"\nenv_key = "ACME_KEY"\nexperimental_bearer_token = "sk-literal-token-123"\n',
    );
    writeConfig(text);
    const err = (await setupCodex(options()).catch((e: unknown) => e)) as BrokerError;
    expect(err).toMatchObject({ code: 'USAGE' });
    expect(err.message).not.toContain('sk-literal-token-123');
    expect(read()).toBe(text);
    const result = await setupCodex(options({ force: true }));
    expect(providers().acme).not.toHaveProperty('env_key');
    expect(providers().acme).not.toHaveProperty('experimental_bearer_token');
    expect(JSON.stringify(result.changes)).not.toContain('sk-literal-token-123');
    expect(fs.readFileSync(result.backup!, 'utf8')).toBe(text);
    expect(fs.statSync(result.backup!).mode & 0o777).toBe(0o600);
  });

  it('refuses to replace another auth command without --force, and never prints its arguments', async () => {
    const text = `${EXISTING}\n[model_providers.acme.auth]\ncommand = "/usr/local/bin/get-key"\nargs = ["--token", "sk-in-args-456"]\n`;
    writeConfig(text);
    const err = (await setupCodex(options()).catch((e: unknown) => e)) as BrokerError;
    expect(err).toMatchObject({ code: 'USAGE' });
    expect(err.message).toContain('get-key');
    expect(err.message).not.toContain('sk-in-args-456');
    const result = await setupCodex(options({ force: true }));
    expect(JSON.stringify(result.changes)).not.toContain('sk-in-args-456');
    expect(providers().acme!.auth).toMatchObject({ command: SHIM_PATH });
  });

  it('updates its own auth command in place (a section stays a section, cwd is kept), but keeps a named profile unless told', async () => {
    const text = `${EXISTING}\n[model_providers.acme.auth]\ncommand = "/old/keybroker/dist/src/shim/keybroker-shim.cjs"\nargs = ["--refresh-interval-ms", "300000", "work"]\ncwd = "/srv"\n`;
    writeConfig(text);
    await setupCodex(options());
    expect(read()).toContain(`[model_providers.acme.auth]\ncommand = "${SHIM_PATH}"`);
    expect(providers().acme!.auth).toMatchObject({ command: SHIM_PATH, cwd: '/srv' });
    await expect(setupCodex(options({ profile: undefined }))).rejects.toMatchObject({ code: 'USAGE' });
    await setupCodex(options({ profile: undefined, force: true }));
    expect(providers().acme!.auth).toMatchObject({ args: ['--refresh-interval-ms', '300000'] });
  });

  it('refuses a file that is not TOML without quoting it', async () => {
    const text = 'model_provider = "acme"\ntoken = sk-not-quoted-789\n';
    writeConfig(text);
    const err = (await setupCodex(options()).catch((e: unknown) => e)) as BrokerError;
    expect(err).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(`${err.message} ${err.fix ?? ''}`).not.toContain('sk-not-quoted-789');
    expect(err.message).toContain('line 2');
  });

  it('warns when Codex would use another provider (the active profile names one), and writes nothing on a dry run', async () => {
    writeConfig(`profile = "fast"\n${EXISTING.replace('model = "o3"', 'model = "o3"\nmodel_provider = "openai"')}`);
    const before = read();
    const result = await setupCodex(options({ dryRun: true, provider: 'acme' }));
    expect(result.changes.map((c) => c.key)).toEqual(['model_providers.acme.auth']);
    expect(result.warnings.some((w) => w.includes('"openai"') && w.includes('profile "fast"'))).toBe(true);
    expect(result.written).toBe(false);
    expect(read()).toBe(before);
  });
});

describe('setup codex through the CLI', () => {
  function keybroker(args: string[]): ReturnType<typeof run> {
    const env = { HOME: home, PATH: process.env.PATH, KEYBROKER_CONFIG: path.join(home, 'kb.yaml') };
    return run(process.execPath, [CLI, ...args], { env, cwd: home, timeoutMs: 30_000 });
  }

  it('writes this installation’s shim, and a second run changes nothing, byte for byte', async () => {
    fs.writeFileSync(path.join(home, 'kb.yaml'), 'profiles:\n  work:\n    source: env:X\n    ttl: 2m\n');
    writeConfig(EXISTING);
    const first = await keybroker(['setup', 'codex', '--profile', 'work']);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^undo: cp /m);
    expect(providers().acme!.auth).toEqual({
      command: SETUP_SHIM,
      args: ['--refresh-interval-ms', '60000', 'work'],
      timeout_ms: 18_000,
      refresh_interval_ms: 60_000,
    });
    const bytes = fs.readFileSync(configFile());
    const second = await keybroker(['setup', 'codex', '--profile', 'work']);
    expect(second.code).toBe(0);
    expect(fs.readFileSync(configFile()).equals(bytes)).toBe(true);
    expect(backups()).toHaveLength(1);
  });

  it('exits USAGE for a profile the config does not have, and leaves the file alone', async () => {
    fs.writeFileSync(path.join(home, 'kb.yaml'), 'profiles:\n  work:\n    source: env:X\n');
    writeConfig(EXISTING);
    const r = await keybroker(['setup', 'codex', '--profile', 'nope']);
    expect(r.code).toBe(ERROR_CODES.USAGE);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(read()).toBe(EXISTING);
  });
});
