// `keybroker setup claude --sandbox` through the built CLI, in a temporary home: Claude Code's
// sandbox turned on in the same settings file as the helper, with every file that leads to a key
// denied (the config directory, each key and token file the config names, the state directory)
// and not the socket's directory; merged into what the file holds, backed up, idempotent. Then
// --managed, into Claude Code's managed settings for every user.
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { CLI, privateTempDir, run, type RunResult } from '../helpers/daemon.js';

const IS_ROOT = process.getuid?.() === 0;

let home: string;
beforeEach(() => {
  home = privateTempDir('kb-setup-sbx-');
});

/** A user's environment with keybroker's default locations under `home`. */
function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: path.join(home, 'run'), LANG: 'C.UTF-8', ...extra };
}

function writePrivate(rel: string, text: string): string {
  const file = path.join(home, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}

function writeConfig(yaml: string): void {
  writePrivate('.config/keybroker/config.yaml', yaml);
}

function setup(args: string[] = [], env: NodeJS.ProcessEnv = userEnv()): Promise<RunResult> {
  return run(process.execPath, [CLI, 'setup', 'claude', '--sandbox', ...args], { env, cwd: home });
}

const settingsFile = (): string => path.join(home, '.claude', 'settings.json');
interface Settings {
  apiKeyHelper?: string;
  env: Record<string, string>;
  permissions: { allow?: string[]; deny: string[] };
  sandbox: {
    autoAllowBashIfSandboxed?: boolean;
    network?: unknown;
    filesystem: { denyRead: string[]; allowWrite?: string[] };
    credentials: { envVars: Array<{ name: string; mode: string }> };
  };
}
const readSettings = (file = settingsFile()): Settings => JSON.parse(fs.readFileSync(file, 'utf8')) as Settings;

const CONFIG = [
  'vault:',
  '  tokenFile: ~/keys/vault-token',
  'onepassword:',
  '  tokenFile: ~/keys/op-token',
  'profiles:',
  '  default:',
  '    source: file:~/keys/anthropic',
  '  shared:',
  '    source: vault://secret/shared#key',
  '  robot:',
  '    source: vault://kv/robot',
  '    vault:',
  '      auth: { method: approle, roleIdFile: ~/keys/role-id, secretIdFile: ~/keys/secret-id }',
  '  team:',
  '    source: op://Team/Anthropic/credential',
  '  ci:',
  '    source: env:KB_CI_KEY',
  '',
].join('\n');

describe('setup claude --sandbox', () => {
  it('turns the sandbox on and denies the config, every key and token file, and the state directory, not the socket', async () => {
    writeConfig(CONFIG);
    const r = await setup();
    expect(r.code).toBe(0);
    const s = readSettings();
    expect(s.apiKeyHelper).toBeDefined();
    expect(s.sandbox).toMatchObject({ enabled: true, failIfUnavailable: true, allowUnsandboxedCommands: false });
    expect([...s.sandbox.filesystem.denyRead].sort()).toEqual([
      '~/.config/keybroker',
      '~/.local/state/keybroker',
      '~/keys/anthropic',
      '~/keys/op-token',
      '~/keys/role-id',
      '~/keys/secret-id',
      '~/keys/vault-token',
    ]);
    expect(s.sandbox.credentials.envVars.map((e) => e.name).sort()).toEqual([
      'KB_CI_KEY',
      'OP_SERVICE_ACCOUNT_TOKEN',
      'VAULT_TOKEN',
    ]);
    expect(new Set(s.sandbox.credentials.envVars.map((e) => e.mode))).toEqual(new Set(['deny']));
    // Claude Code's own file tools are not sandboxed: a Read(…) deny rule for each path too.
    expect([...s.permissions.deny].sort()).toEqual([...s.sandbox.filesystem.denyRead].map((p) => `Read(${p})`).sort());
    // The socket's directory is never hidden: the sandbox refuses the connect already.
    expect(s.sandbox.filesystem.denyRead).not.toContain('~/run/keybroker');
  });

  it('keeps what the file holds, adds at the end, writes a backup and an undo line; a second run changes nothing', async () => {
    writeConfig('profiles:\n  default:\n    source: file:~/keys/anthropic\n');
    const before = {
      permissions: { allow: ['Bash(npm test)'] },
      env: { KEEP_ME: '1' },
      sandbox: {
        autoAllowBashIfSandboxed: true,
        network: { allowedDomains: ['registry.npmjs.org'] },
        filesystem: { denyRead: ['~/.ssh'], allowWrite: ['/tmp/build'] },
        credentials: { envVars: [{ name: 'GITHUB_TOKEN', mode: 'mask' }] },
      },
    };
    fs.mkdirSync(path.dirname(settingsFile()), { recursive: true });
    fs.writeFileSync(settingsFile(), JSON.stringify(before, null, 4), { mode: 0o640 });
    fs.chmodSync(settingsFile(), 0o640);
    const r = await setup();
    expect(r.code).toBe(0);
    const s = readSettings();
    expect(s.permissions).toEqual({
      allow: ['Bash(npm test)'],
      deny: ['Read(~/.config/keybroker)', 'Read(~/.local/state/keybroker)', 'Read(~/keys/anthropic)'],
    });
    expect(s.env.KEEP_ME).toBe('1');
    expect(s.sandbox.autoAllowBashIfSandboxed).toBe(true);
    expect(s.sandbox.network).toEqual(before.sandbox.network);
    expect(s.sandbox.filesystem).toEqual({
      denyRead: ['~/.ssh', '~/.config/keybroker', '~/.local/state/keybroker', '~/keys/anthropic'],
      allowWrite: ['/tmp/build'],
    });
    expect(s.sandbox.credentials.envVars).toEqual([{ name: 'GITHUB_TOKEN', mode: 'mask' }]);
    expect(fs.statSync(settingsFile()).mode & 0o777).toBe(0o640);
    // The file's own indentation is kept.
    expect(fs.readFileSync(settingsFile(), 'utf8')).toContain('\n    "permissions"');
    const backups = fs.readdirSync(path.dirname(settingsFile())).filter((f) => f.includes('keybroker-backup'));
    expect(backups).toHaveLength(1);
    expect(JSON.parse(fs.readFileSync(path.join(home, '.claude', backups[0]!), 'utf8'))).toEqual(before);
    expect(r.stdout).toMatch(/^undo: cp .*keybroker-backup.* .*settings\.json$/m);

    const bytes = fs.readFileSync(settingsFile());
    const again = await setup();
    expect(again.code).toBe(0);
    expect(fs.readFileSync(settingsFile())).toEqual(bytes);
    expect(fs.readdirSync(path.dirname(settingsFile())).filter((f) => f.includes('keybroker-backup'))).toHaveLength(1);
  });

  it('--dry-run shows the change and writes nothing', async () => {
    writeConfig('profiles:\n  default:\n    source: file:~/keys/anthropic\n');
    const r = await setup(['--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('sandbox.filesystem.denyRead');
    expect(r.stdout).toContain('~/keys/anthropic');
    expect(fs.existsSync(settingsFile())).toBe(false);
  });

  // Keybroker's own files where they are not by default, in one run: the config (named by
  // KEYBROKER_CONFIG) outside a keybroker directory, and no XDG_RUNTIME_DIR, so that the state
  // directory holds the socket too.
  it('a config kept outside a keybroker directory: that file, not the directory around it; a state directory that holds the socket too (no XDG_RUNTIME_DIR): its files, one by one', async () => {
    const config = writePrivate('dotfiles/keybroker.yaml', 'profiles:\n  default:\n    source: env:KB_X\n');
    const r = await setup([], userEnv({ KEYBROKER_CONFIG: config, XDG_RUNTIME_DIR: undefined }));
    expect(r.code).toBe(0);
    const deny = readSettings().sandbox.filesystem.denyRead;
    expect(deny).toContain('~/dotfiles/keybroker.yaml');
    expect(deny).not.toContain('~/dotfiles');
    expect(readSettings().permissions.deny).toContain('Read(~/dotfiles/keybroker.yaml)');
    expect(deny).toEqual(
      expect.arrayContaining([
        '~/.local/state/keybroker/audit.jsonl',
        '~/.local/state/keybroker/audit.jsonl.1',
        '~/.local/state/keybroker/audit.salt',
      ]),
    );
    expect(deny).not.toContain('~/.local/state/keybroker');
  });

  // Key files where a path is not simply the file, one profile each, in one run.
  it('a key file reached through a symbolic link: the link and where it leads; one outside the home directory: written absolute, its Read rule starting with //', async () => {
    writePrivate('vault/anthropic', 'sk-linked\n');
    fs.symlinkSync(path.join(home, 'vault', 'anthropic'), path.join(home, 'key-link'));
    const elsewhere = privateTempDir('kb-setup-sbx-key-');
    fs.writeFileSync(path.join(elsewhere, 'key'), 'sk-elsewhere\n', { mode: 0o600 });
    writeConfig(`profiles:\n  default:\n    source: file:~/key-link\n  other:\n    source: file:${elsewhere}/key\n`);
    const r = await setup();
    expect(r.code).toBe(0);
    const s = readSettings();
    expect(s.sandbox.filesystem.denyRead).toEqual(expect.arrayContaining(['~/key-link', '~/vault/anthropic']));
    expect(s.sandbox.filesystem.denyRead).toContain(`${elsewhere}/key`);
    expect(s.permissions.deny).toContain(`Read(/${elsewhere}/key)`);
  });

  it('refuses a sandbox block of the wrong shape and leaves the file as it was', async () => {
    writeConfig('profiles:\n  default:\n    source: env:KB_X\n');
    fs.mkdirSync(path.dirname(settingsFile()), { recursive: true });
    const text = JSON.stringify({ sandbox: { filesystem: { denyRead: '~/.ssh' } } });
    fs.writeFileSync(settingsFile(), text);
    const r = await setup();
    expect(r.code).toBe(ERROR_CODES.CONFIG_INVALID);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(text);
  });

  it('does not go with --adopt: refused (exit 2) before the helper is run, the settings untouched', async () => {
    writeConfig('profiles:\n  other:\n    source: env:KB_X\n');
    const marker = path.join(home, 'helper-ran');
    fs.mkdirSync(path.dirname(settingsFile()), { recursive: true });
    const text = JSON.stringify({ apiKeyHelper: `touch ${marker}; echo sk-adopt-me` });
    fs.writeFileSync(settingsFile(), text);
    const r = await setup(['--adopt']);
    expect(r.code).toBe(ERROR_CODES.USAGE);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(marker)).toBe(false);
    expect(fs.readFileSync(settingsFile(), 'utf8')).toBe(text);
  });
});

describe.runIf(IS_ROOT)('setup claude --sandbox --managed', () => {
  it("writes Claude Code's managed settings, with the managed profiles' key files and every user's directories", async () => {
    const etc = path.join(home, 'etc');
    fs.mkdirSync(path.join(etc, 'keybroker'), { recursive: true, mode: 0o755 });
    fs.chmodSync(home, 0o755);
    fs.chmodSync(etc, 0o755);
    fs.chmodSync(path.join(etc, 'keybroker'), 0o755);
    const managedConfig = path.join(etc, 'keybroker', 'managed.yaml');
    fs.writeFileSync(managedConfig, 'profiles:\n  org:\n    source: file:~/.org/anthropic\n', { mode: 0o644 });
    writeConfig('profiles:\n  mine:\n    source: file:~/keys/mine\n');
    const claudeManaged = path.join(etc, 'claude-code');
    const env = userEnv({
      KEYBROKER_MANAGED_CONFIG: managedConfig,
      KEYBROKER_CLAUDE_MANAGED_DIR: claudeManaged,
      XDG_CONFIG_HOME: path.join(home, 'elsewhere'),
    });
    const r = await setup(['--managed', '--profile', 'org'], env);
    expect(r.code).toBe(0);
    const file = path.join(claudeManaged, 'managed-settings.json');
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);
    const s = readSettings(file);
    expect(s.sandbox).toMatchObject({ enabled: true, failIfUnavailable: true, allowUnsandboxedCommands: false });
    // Every user's default directories (not this one's XDG_CONFIG_HOME), the organisation's key
    // file as each user's daemon reads it, and not the key of a profile only this user has.
    expect(s.sandbox.filesystem.denyRead).toEqual([
      '~/.config/keybroker',
      '~/.local/state/keybroker/audit.jsonl',
      '~/.local/state/keybroker/audit.jsonl.1',
      '~/.local/state/keybroker/audit.salt',
      '~/.org/anthropic',
    ]);
    expect(fs.existsSync(settingsFile())).toBe(false);
  });
});
