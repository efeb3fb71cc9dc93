// `keybroker setup claude --managed`: Claude Code's managed settings (every user of the machine),
// written into a temporary directory named by KEYBROKER_CLAUDE_MANAGED_DIR, with the profile's
// TTL taken from keybroker's managed config; then doctor reads it back as the highest-precedence
// settings.
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { setupClaude, type SetupClaudeOptions } from '../../src/integration/claude-setup.js';
import { CLI, NATIVE_SHIM, privateTempDir, run, SHIM, SHIMS, startDaemon } from '../helpers/daemon.js';

/** setup claude writes the native shim for apiKeyHelper where it was built. */
const SETUP_SHIM = SHIMS.find((s) => s.name === 'native')!.skip === undefined ? NATIVE_SHIM : SHIM;

const IS_ROOT = process.getuid?.() === 0;
if (!IS_ROOT)
  console.warn(
    'claude-setup-managed.test.ts: skipping the CLI case: a trusted keybroker managed config must be root-owned, which needs root (CI runs as root)',
  );

let dir: string;
let claudeManaged: string;
const NOW = new Date('2026-03-04T05:06:07.890Z');

beforeEach(() => {
  dir = privateTempDir('kb-setup-managed-');
  claudeManaged = path.join(dir, 'etc', 'claude-code');
});

const managedSettings = (): string => path.join(claudeManaged, 'managed-settings.json');
const readJson = (file: string): Record<string, unknown> =>
  JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;

function options(overrides: Partial<SetupClaudeOptions> = {}): SetupClaudeOptions {
  return {
    env: { HOME: dir },
    home: dir,
    cwd: dir,
    platform: 'linux',
    managedDir: claudeManaged,
    shim: '/bin/sh',
    profile: 'org',
    helper: 'api-key',
    project: false,
    managed: true,
    force: false,
    dryRun: false,
    now: NOW,
    profileTtlMs: 2 * 60_000,
    ...overrides,
  };
}

describe('setup claude --managed (library)', () => {
  it('creates the managed settings readable by every user (0644, directory 0755), with the helper TTL', async () => {
    const result = await setupClaude(options());
    expect(result.scope).toBe('managed');
    expect(result.file).toBe(managedSettings());
    expect(readJson(managedSettings())).toEqual({
      apiKeyHelper: '/bin/sh org',
      env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '60000' },
    });
    expect(fs.statSync(managedSettings()).mode & 0o777).toBe(0o644);
    expect(fs.statSync(claudeManaged).mode & 0o777).toBe(0o755);
    expect(result.warnings).toEqual([]);
    // Idempotent.
    expect((await setupClaude(options())).changes).toEqual([]);
  });

  it('merges into existing managed settings: backup first, other keys and the mode kept, atomic replace', async () => {
    fs.mkdirSync(claudeManaged, { recursive: true });
    const before = '{\n  "permissions": { "deny": ["Read(./.env)"] },\n  "env": { "DISABLE_TELEMETRY": "1" }\n}\n';
    fs.writeFileSync(managedSettings(), before, { mode: 0o640 });
    fs.chmodSync(managedSettings(), 0o640);
    const result = await setupClaude(options());
    expect(readJson(managedSettings())).toEqual({
      permissions: { deny: ['Read(./.env)'] },
      env: { DISABLE_TELEMETRY: '1', CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '60000' },
      apiKeyHelper: '/bin/sh org',
    });
    expect(fs.statSync(managedSettings()).mode & 0o777).toBe(0o640);
    expect(fs.readFileSync(result.backup!, 'utf8')).toBe(before);
    expect(fs.readdirSync(claudeManaged).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('warns when other users could not run the shim, and refuses --managed with --project', async () => {
    const privateShim = path.join(dir, 'keybroker-shim.cjs');
    fs.writeFileSync(privateShim, '', { mode: 0o755 });
    expect((await setupClaude(options({ shim: privateShim }))).warnings).toHaveLength(1);
    await expect(setupClaude(options({ project: true }))).rejects.toMatchObject({ code: 'USAGE' });
  });
});

describe.runIf(IS_ROOT)('setup claude --managed through the CLI', () => {
  it('takes the profile and its TTL from the managed keybroker config; doctor sees the helper in the managed settings', async () => {
    const etc = path.join(dir, 'etc', 'keybroker');
    fs.mkdirSync(etc, { recursive: true, mode: 0o755 });
    fs.chmodSync(path.join(dir, 'etc'), 0o755);
    fs.chmodSync(etc, 0o755);
    const managedConfig = path.join(etc, 'managed.yaml');
    fs.writeFileSync(managedConfig, 'profiles:\n  org:\n    source: env:KB_ORG_SETUP\n    ttl: 4m\n', { mode: 0o644 });
    const daemon = await startDaemon({
      config: 'profiles:\n  mine:\n    source: env:KB_ORG_SETUP\n',
      env: { KB_ORG_SETUP: 'sk-org-setup-41', KEYBROKER_MANAGED_CONFIG: managedConfig },
    });
    const env = { ...daemon.env, KEYBROKER_CLAUDE_MANAGED_DIR: claudeManaged };
    const r = await run(process.execPath, [CLI, 'setup', 'claude', '--managed', '--profile', 'org'], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('(managed settings)');
    const settings = readJson(managedSettings());
    expect(settings).toEqual({
      apiKeyHelper: `${SETUP_SHIM} org`,
      env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '120000' },
    });
    const helper = await run('/bin/sh', ['-c', settings.apiKeyHelper as string], { env });
    expect(helper.stdout.trim()).toBe('sk-org-setup-41');

    // A user's own settings with another helper: the managed one wins, as in Claude Code.
    fs.mkdirSync(path.join(daemon.env.HOME!, '.claude'), { recursive: true });
    fs.writeFileSync(
      path.join(daemon.env.HOME!, '.claude', 'settings.json'),
      JSON.stringify({ apiKeyHelper: `${SHIM} mine` }),
    );
    const doctor = JSON.parse(
      (await run(process.execPath, [CLI, 'doctor', '--json', '--no-fetch'], { env })).stdout,
    ) as Array<{ id: string; status: string; message: string }>;
    const credential = doctor.find((c) => c.id === 'credential')!;
    expect(credential.status).toBe('ok');
    expect(credential.message).toContain('keybroker profile "org"');
    expect(credential.message).toContain(managedSettings());

    // A profile only the user has is not good enough for every user.
    const mine = await run(process.execPath, [CLI, 'setup', 'claude', '--managed', '--profile', 'mine'], { env });
    expect(mine.code).toBe(2);
    // --managed and --project together: a usage error from the option parser.
    expect((await run(process.execPath, [CLI, 'setup', 'claude', '--managed', '--project'], { env })).code).toBe(2);
  });
});
