// `keybroker setup claude --adopt` end to end: the built CLI on a temporary HOME whose
// ~/.claude/settings.json runs a helper (fake `op` and `vault` programs on PATH, a fake Vault
// server), a real daemon that reloads, and a fake Claude Code that runs the helper adopt wrote.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { CLI, run, SETUP_SHIM, startDaemon, workspace } from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';
import { startFakeVault } from '../helpers/vault.js';

const KEY = 'sk-ant-adopt-5e0b2c71d4';
const OTHER = 'sk-ant-adopt-other-88f1';
const OP_HELPER = 'op read op://Private/Anthropic/credential';
const VAULT_HELPER = 'vault kv get -field=api_key secret/anthropic';

let dir: string;
let env: NodeJS.ProcessEnv;
const settingsFile = (): string => path.join(dir, '.claude', 'settings.json');
const configFile = (): string => env.KEYBROKER_CONFIG!;

/**
 * A fake `op` that prints KEY for op://Private/Anthropic/credential and fails like op for anything
 * else, and a fake `vault` that prints $FAKE_VAULT_PRINTS: the old helpers, as commands.
 */
function writeFakePrograms(bin: string): void {
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(
    path.join(bin, 'op'),
    `#!/bin/sh\n[ "$1" = read ] && [ "$2" = op://Private/Anthropic/credential ] && { echo ${KEY}; exit 0; }\necho '[ERROR] "Missing" isn'"'"'t an item in the "Private" vault.' >&2\nexit 1\n`,
    { mode: 0o755 },
  );
  fs.writeFileSync(path.join(bin, 'vault'), '#!/bin/sh\nprintf %s "$FAKE_VAULT_PRINTS"\n', { mode: 0o755 });
}

function writeSettings(helper: string): string {
  const text = `{\n  "model": "opus",\n  "apiKeyHelper": ${JSON.stringify(helper)},\n  "permissions": { "deny": ["Read(./.env)"] },\n  "env": { "DISABLE_TELEMETRY": "1" }\n}\n`;
  fs.mkdirSync(path.dirname(settingsFile()), { recursive: true });
  fs.writeFileSync(settingsFile(), text, { mode: 0o644 });
  return text;
}

const adopt = (args: string[] = [], extra: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [CLI, 'setup', 'claude', '--adopt', ...args], { env: { ...env, ...extra }, cwd: dir });

const readJson = (file: string): Record<string, unknown> =>
  JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
const siblings = (file: string): string[] => fs.readdirSync(path.dirname(file)).sort();

beforeEach(() => {
  ({ dir, env } = workspace({ prefix: 'kb-adopt-' }));
  for (const name of Object.keys(env)) if (name.startsWith('OP_') || name.startsWith('VAULT_')) delete env[name];
  writeFakePrograms(path.join(dir, 'bin'));
  env.PATH = `${path.join(dir, 'bin')}:${env.PATH}`;
});

describe('setup claude --adopt', () => {
  it('adopts op read (1Password unreachable here: kept as exec:), keeps every other setting, and the running daemon serves it to Claude Code', async () => {
    const daemon = await startDaemon({
      dir,
      config: 'profiles:\n  other:\n    source: env:KB_ADOPT_OTHER\n',
      env: { PATH: env.PATH, KB_ADOPT_OTHER: OTHER },
    });
    writeSettings(OP_HELPER);
    const r = await adopt();
    expect(r.stderr).not.toContain(KEY);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(KEY);
    expect(r.stdout).toMatch(/fingerprint [0-9a-f]{12}/);
    // The settings: the helper is the shim (no profile: "default" was free), the rest as it was.
    expect(readJson(settingsFile())).toEqual({
      model: 'opus',
      apiKeyHelper: SETUP_SHIM,
      permissions: { deny: ['Read(./.env)'] },
      env: { DISABLE_TELEMETRY: '1', CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '300000' },
    });
    expect(siblings(settingsFile()).filter((f) => f.includes('.keybroker-backup-'))).toHaveLength(1);
    // op:// could not be read here (no 1Password credentials), so the profile runs the command.
    const config = fs.readFileSync(configFile(), 'utf8');
    expect(config).toMatch(/^ {2}default:\n {4}source: exec:op read op:\/\/Private\/Anthropic\/credential$/m);
    expect(config).toContain('source: env:KB_ADOPT_OTHER');
    // The daemon reloaded: the profile it did not have is served through the helper adopt wrote.
    const claude = startFakeClaude(dir, { ...daemon.env, ...CLAUDE_ENV });
    const served = await claude.callHelper(readJson(settingsFile()).apiKeyHelper as string);
    expect(served).toMatchObject({ code: 0, stdout: `${KEY}\n` });
  });

  it('does not switch a failing helper: settings and config stay byte for byte, no backup, the failure exit status', async () => {
    const settings = writeSettings('op read op://Private/Missing/credential');
    const config = 'profiles:\n  other:\n    source: env:KB_ADOPT_OTHER\n';
    fs.writeFileSync(configFile(), config, { mode: 0o600 });
    const before = siblings(settingsFile());
    const r = await adopt();
    expect(r.code).toBe(ERROR_CODES.SOURCE_ERROR);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^keybroker: /);
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(settings);
    expect(siblings(settingsFile())).toEqual(before);
    expect(fs.readFileSync(configFile(), 'utf8')).toBe(config);
    expect(siblings(configFile()).filter((f) => f.includes('.keybroker-backup-'))).toEqual([]);
  });

  it('writes nothing with --dry-run, and says there is nothing to adopt once the helper is keybroker-shim', async () => {
    const settings = writeSettings(OP_HELPER);
    // --as-exec: the plan without the 1Password attempt (the first test covers that fallback), which
    // costs the CLI a third more CPU and changes nothing about what a dry run writes.
    const dry = await adopt(['--dry-run', '--as-exec']);
    expect(dry.code).toBe(0);
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(settings);
    expect(fs.existsSync(configFile())).toBe(false);
    // The helper an adopt writes (the first test checks that it does), without a process to write it.
    const after = writeSettings(SETUP_SHIM);
    const again = await adopt();
    expect(again.code).toBe(0);
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(after);
  });

  it('never overwrites a profile of yours: "default" taken, it adds a named one; --profile naming a taken one is refused (exit 2) with nothing changed', async () => {
    const config = 'profiles:\n  default:\n    source: env:KB_ADOPT_OTHER\n';
    fs.writeFileSync(configFile(), config, { mode: 0o600 });
    const settings = writeSettings(OP_HELPER);
    const refused = await adopt(['--profile', 'default']);
    expect(refused.code).toBe(ERROR_CODES.USAGE);
    expect(fs.readFileSync(configFile(), 'utf8')).toBe(config);
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(settings);

    const r = await adopt();
    expect(r.code).toBe(0);
    const written = fs.readFileSync(configFile(), 'utf8');
    expect(written.startsWith(config)).toBe(true);
    expect(written).toMatch(/^ {2}anthropic:\n {4}source: exec:op read/m);
    // The helper names the profile it adopted: "default" is someone else's key.
    expect(readJson(settingsFile()).apiKeyHelper).toBe(`${SETUP_SHIM} anthropic`);
    const backups = siblings(configFile()).filter((f) => f.startsWith('config.yaml.keybroker-backup-'));
    expect(backups).toHaveLength(1);
    expect(fs.readFileSync(path.join(dir, backups[0]!), 'utf8')).toBe(config);
  });
});

describe('setup claude --adopt with a native source (a fake Vault)', () => {
  let vaultEnv: NodeJS.ProcessEnv;
  beforeAll(async () => {
    const vault = await startFakeVault({ secrets: { 'secret/anthropic': { api_key: KEY } } });
    vaultEnv = { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.token };
  });

  it('vault kv get becomes vault://…#api_key when both give the same key', async () => {
    writeSettings(VAULT_HELPER);
    const r = await adopt([], { ...vaultEnv, FAKE_VAULT_PRINTS: KEY });
    expect(r.code).toBe(0);
    expect(fs.readFileSync(configFile(), 'utf8')).toMatch(/^ {4}source: vault:\/\/secret\/anthropic#api_key$/m);
    expect(readJson(settingsFile()).apiKeyHelper).toBe(SETUP_SHIM);
  });

  it('does not switch a helper whose value differs from the translated source: MISMATCH (exit 22), nothing written', async () => {
    const settings = writeSettings(VAULT_HELPER);
    const r = await adopt([], { ...vaultEnv, FAKE_VAULT_PRINTS: OTHER });
    expect(r.code).toBe(ERROR_CODES.MISMATCH);
    expect(r.stdout + r.stderr).not.toContain(KEY);
    expect(r.stdout + r.stderr).not.toContain(OTHER);
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(settings);
    expect(siblings(settingsFile())).toEqual(['settings.json']);
    expect(fs.existsSync(configFile())).toBe(false);
  });

  it('with --as-exec keeps the command even where the native source would do', async () => {
    writeSettings(VAULT_HELPER);
    const r = await adopt(['--as-exec'], { ...vaultEnv, FAKE_VAULT_PRINTS: KEY });
    expect(r.code).toBe(0);
    expect(fs.readFileSync(configFile(), 'utf8')).toMatch(
      /^ {4}source: exec:vault kv get -field=api_key secret\/anthropic$/m,
    );
  });
});
