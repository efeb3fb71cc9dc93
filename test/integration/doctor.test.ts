// `keybroker doctor`, table-driven over synthetic environments and temporary settings files for
// each precedence case and footgun; then against a real daemon (timed profile fetches), and the
// built CLI's exit status. No case may print a secret: every value planted below contains
// "doctor-secret", and no rendered report may.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  renderDoctor,
  runDoctor,
  type CheckStatus,
  type DoctorCheck,
  type DoctorOptions,
} from '../../src/integration/doctor.js';
import { VERSION } from '../../src/version.js';
import {
  CLI,
  NATIVE_SHIM,
  privateTempDir,
  run,
  SHIM,
  SHIMS,
  startDaemon,
  type DaemonHandle,
} from '../helpers/daemon.js';

const SECRET = 'doctor-secret';
const HELPER = `${SHIM} work`;
const CONFIG = 'profiles:\n  work:\n    source: env:KB_DOCTOR_WORK\n';

interface Case {
  name: string;
  /** The shell environment (HOME, PATH and XDG_RUNTIME_DIR are filled in). */
  env?: Record<string, string>;
  /** Files by where they go: "~/…" (home), "project/…", "managed/…"; objects are written as JSON. */
  files?: Record<string, string | object>;
  /** keybroker's config (default: one profile "work"); null for none. */
  config?: string | null;
  /** Directories to create first, with their mode. */
  dirs?: Record<string, number>;
  setup?: (home: string) => void;
  /** Expected status per check id; "absent" for a check that must not appear. */
  expect: Record<string, CheckStatus | 'absent'>;
  /** Text each check's message (or fix) must contain. */
  says?: Record<string, string[]>;
}

const userHelper = { '~/.claude/settings.json': { apiKeyHelper: HELPER } };
const nativeBuilt = SHIMS.find((s) => s.name === 'native')!.skip === undefined;

const cases: Case[] = [
  {
    name: 'a helper without a profile, started in a mapped project: the profile of that directory',
    files: { '~/.claude/settings.json': { apiKeyHelper: SHIM } },
    config: 'directories:\n  ~/project: work\nprofiles:\n  work:\n    source: env:KB_DOCTOR_WORK\n    ttl: 2m\n',
    expect: { credential: 'ok', 'profile-here': 'ok', config: 'ok', 'helper-ttl': 'warn' },
    says: {
      credential: ['the profile of the project directory'],
      'profile-here': ['~/project → work (directories: ~/project)'],
      'helper-ttl': ['profile "work"'],
    },
  },
  {
    name: 'a helper without a profile, outside every mapped directory, and no default profile',
    files: { '~/.claude/settings.json': { apiKeyHelper: SHIM } },
    config: 'directories:\n  ~/elsewhere: work\nprofiles:\n  work:\n    source: env:KB_DOCTOR_WORK\n',
    expect: { 'profile-here': 'fail', config: 'ok' },
    says: { 'profile-here': ['~/project → default', 'add a "default" profile'] },
  },
  {
    name: 'a helper that names a profile, with a directories: map it then ignores',
    files: userHelper,
    config:
      'directories:\n  ~/project: other\nprofiles:\n  work:\n    source: env:KB_DOCTOR_WORK\n  other:\n    source: env:KB_DOCTOR_WORK\n',
    expect: { 'profile-here': 'warn' },
    says: { 'profile-here': ['~/project → work (named by the helper'] },
  },
  {
    name: 'a helper that names a profile and no directories: map: nothing to say about directories',
    files: userHelper,
    expect: { 'profile-here': 'ok' },
  },
  {
    name: 'apiKeyHelper in user settings: keybroker serves Claude Code',
    files: userHelper,
    expect: {
      credential: 'ok',
      shadowing: 'ok',
      'helper-scope': 'ok',
      'shim:apiKeyHelper': 'ok',
      config: 'ok',
      'helper-ttl': 'ok',
      socket: 'ok',
      daemon: 'warn',
      'cloud-provider': 'absent',
      '1password': 'absent',
    },
    says: { credential: ['apiKeyHelper', 'keybroker profile "work"'], daemon: ['starts one on first use'] },
  },
  {
    name: 'an exported ANTHROPIC_API_KEY shadows the helper, found in ~/.zshrc',
    env: { ANTHROPIC_API_KEY: `sk-ant-${SECRET}-1` },
    files: { ...userHelper, '~/.zshrc': `# keys\nexport ANTHROPIC_API_KEY="sk-ant-${SECRET}-1"\n` },
    expect: { credential: 'fail', shadowing: 'fail' },
    says: {
      credential: ['ANTHROPIC_API_KEY (from the environment)'],
      shadowing: ['~/.zshrc:2', 'unset ANTHROPIC_API_KEY'],
    },
  },
  {
    name: 'ANTHROPIC_API_KEY set by something other than a startup file',
    env: { ANTHROPIC_API_KEY: `sk-ant-${SECRET}-2` },
    files: userHelper,
    expect: { shadowing: 'fail' },
    says: { shadowing: ['not by a shell startup file'] },
  },
  {
    name: 'ANTHROPIC_AUTH_TOKEN outranks ANTHROPIC_API_KEY; fish and bash lines are both found',
    env: { ANTHROPIC_AUTH_TOKEN: `tok-${SECRET}-3`, ANTHROPIC_API_KEY: `sk-ant-${SECRET}-4` },
    files: {
      ...userHelper,
      '~/.config/fish/config.fish': `set -gx ANTHROPIC_AUTH_TOKEN tok-${SECRET}-3\n`,
      '~/.bashrc': `ANTHROPIC_API_KEY=sk-ant-${SECRET}-4\n`,
    },
    expect: { credential: 'fail', shadowing: 'fail' },
    says: { credential: ['will use ANTHROPIC_AUTH_TOKEN'], shadowing: ['~/.config/fish/config.fish:1', '~/.bashrc:1'] },
  },
  {
    name: "ANTHROPIC_API_KEY in a settings file's env block",
    files: { ...userHelper, 'project/.claude/settings.json': { env: { ANTHROPIC_API_KEY: `sk-ant-${SECRET}-5` } } },
    expect: { credential: 'fail', shadowing: 'fail' },
    says: { shadowing: ['env block of', '.claude/settings.json'] },
  },
  {
    name: 'an empty ANTHROPIC_API_KEY shadows nothing',
    env: { ANTHROPIC_API_KEY: '' },
    files: userHelper,
    expect: { credential: 'ok', shadowing: 'ok' },
  },
  {
    name: 'Bedrock from managed settings, with keybroker as awsCredentialExport',
    env: { AWS_REGION: 'us-east-1' },
    files: {
      'managed/managed-settings.json': { env: { CLAUDE_CODE_USE_BEDROCK: '1' } },
      '~/.claude/settings.json': { awsCredentialExport: `${SHIM} --format aws-credentials work` },
    },
    expect: { credential: 'ok', 'cloud-provider': 'ok', 'shim:awsCredentialExport': 'ok', shadowing: 'absent' },
    says: {
      credential: ['Amazon Bedrock (CLAUDE_CODE_USE_BEDROCK)', 'managed-settings.json'],
      'cloud-provider': ['awsCredentialExport (keybroker)'],
      'shim:awsCredentialExport': ['as aws-credentials'],
    },
  },
  {
    name: 'Bedrock flag without AWS_REGION or any AWS credentials',
    env: { CLAUDE_CODE_USE_BEDROCK: 'true' },
    files: userHelper,
    expect: { credential: 'ok', 'cloud-provider': 'fail' },
    says: { 'cloud-provider': ['AWS_REGION', 'AWS credentials', 'unset CLAUDE_CODE_USE_BEDROCK'] },
  },
  {
    name: 'Bedrock with credentials: the helper is ignored',
    env: { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'eu-west-1' },
    files: { ...userHelper, '~/.aws/credentials': `[default]\naws_access_key_id = AKIA${SECRET}\n` },
    expect: { 'cloud-provider': 'warn' },
    says: { 'cloud-provider': ['ignores apiKeyHelper', '~/.aws/config or ~/.aws/credentials'] },
  },
  {
    name: 'Vertex without a project or Google credentials',
    env: { CLAUDE_CODE_USE_VERTEX: '1' },
    expect: { credential: 'ok', 'cloud-provider': 'fail' },
    says: { 'cloud-provider': ['ANTHROPIC_VERTEX_PROJECT_ID', 'gcloud auth application-default login'] },
  },
  {
    name: 'Vertex with a project and application-default credentials',
    env: { CLAUDE_CODE_USE_VERTEX: '1', ANTHROPIC_VERTEX_PROJECT_ID: 'proj', CLOUD_ML_REGION: 'us-east5' },
    files: { '~/.config/gcloud/application_default_credentials.json': { refresh_token: SECRET } },
    expect: { 'cloud-provider': 'ok' },
    says: { 'cloud-provider': ['Google Vertex AI with gcloud application-default credentials'] },
  },
  {
    name: 'Foundry with an API key but no resource',
    env: { CLAUDE_CODE_USE_FOUNDRY: '1', ANTHROPIC_FOUNDRY_API_KEY: `${SECRET}-6` },
    expect: { 'cloud-provider': 'fail' },
    says: { 'cloud-provider': ['ANTHROPIC_FOUNDRY_RESOURCE or ANTHROPIC_FOUNDRY_BASE_URL'] },
  },
  {
    name: 'two cloud provider flags',
    env: { CLAUDE_CODE_USE_BEDROCK: '1', CLAUDE_CODE_USE_VERTEX: '1', AWS_REGION: 'us-east-1', AWS_PROFILE: 'dev' },
    expect: { credential: 'ok', 'cloud-provider': 'warn' },
    says: { 'cloud-provider': ['CLAUDE_CODE_USE_VERTEX is also set', 'CLAUDE_CODE_USE_BEDROCK wins'] },
  },
  {
    name: 'a cloud flag set to 0 is off',
    env: { CLAUDE_CODE_USE_BEDROCK: '0' },
    files: userHelper,
    expect: { credential: 'ok', 'cloud-provider': 'absent' },
    says: { credential: ['apiKeyHelper'] },
  },
  {
    name: 'only CLAUDE_CODE_OAUTH_TOKEN',
    env: { CLAUDE_CODE_OAUTH_TOKEN: `oauth-${SECRET}-7` },
    expect: { credential: 'warn', shadowing: 'absent', 'helper-scope': 'absent' },
    says: { credential: ['CLAUDE_CODE_OAUTH_TOKEN', 'no apiKeyHelper is set', 'keybroker setup claude'] },
  },
  {
    name: 'nothing configured: subscription login',
    expect: { credential: 'warn' },
    says: { credential: ['subscription login'] },
  },
  {
    name: 'apiKeyHelper only in project settings',
    files: { 'project/.claude/settings.json': { apiKeyHelper: HELPER } },
    expect: { credential: 'ok', 'helper-scope': 'warn' },
    says: { 'helper-scope': ['only in project settings', 'workspace trust'] },
  },
  {
    name: 'local settings override the user helper',
    files: { ...userHelper, 'project/.claude/settings.local.json': { apiKeyHelper: `${SHIM} other` } },
    config: 'profiles:\n  work:\n    source: env:A\n  other:\n    source: env:B\n',
    expect: { credential: 'ok', 'helper-scope': 'ok' },
    says: { credential: ['settings.local.json', 'keybroker profile "other"'] },
  },
  {
    name: 'managed settings override every other helper',
    files: {
      ...userHelper,
      'project/.claude/settings.local.json': { apiKeyHelper: `${SHIM} other` },
      'managed/managed-settings.d/50-keys.json': { apiKeyHelper: `op read op://Org/${SECRET}/key` },
    },
    expect: { credential: 'warn', 'shim:apiKeyHelper': 'absent' },
    says: { credential: ['managed-settings.d/50-keys.json', 'runs op …, not keybroker-shim'] },
  },
  {
    name: 'apiKeyHelper runs the Node shim: doctor says which, and that the native one is built beside it',
    files: userHelper,
    expect: { 'shim:apiKeyHelper': 'ok' },
    says: {
      'shim:apiKeyHelper': [
        'runs the Node keybroker-shim',
        ...(nativeBuilt ? ['keybroker setup claude --force writes it'] : []),
      ],
    },
  },
  ...(nativeBuilt
    ? [
        {
          name: 'apiKeyHelper runs the native shim',
          files: { '~/.claude/settings.json': { apiKeyHelper: `${NATIVE_SHIM} work` } },
          expect: { 'shim:apiKeyHelper': 'ok' },
          says: { 'shim:apiKeyHelper': ['runs the native keybroker-shim', 'for profile "work"'] },
        } satisfies Case,
        {
          name: 'the native shim without the Node shim it hands over to',
          setup: (home: string) => {
            fs.mkdirSync(path.join(home, 'kb', 'native'), { recursive: true });
            fs.copyFileSync(NATIVE_SHIM, path.join(home, 'kb', 'native', 'keybroker-shim'));
          },
          files: { '~/.claude/settings.json': { apiKeyHelper: '~HOME~/kb/native/keybroker-shim work' } },
          expect: { 'shim:apiKeyHelper': 'fail' },
          says: { 'shim:apiKeyHelper': ['which is missing', 'reinstall keybroker'] },
        } satisfies Case,
      ]
    : []),
  {
    name: 'the shim path no longer exists',
    files: { '~/.claude/settings.json': { apiKeyHelper: '/opt/gone/keybroker-shim.js work' } },
    expect: { 'shim:apiKeyHelper': 'fail' },
    says: { 'shim:apiKeyHelper': ['does not exist', 'keybroker setup claude --force'] },
  },
  {
    name: 'the shim is not executable',
    setup: (home) => {
      fs.mkdirSync(path.join(home, 'bin'));
      fs.copyFileSync(SHIM, path.join(home, 'bin', 'keybroker-shim.js'));
      fs.chmodSync(path.join(home, 'bin', 'keybroker-shim.js'), 0o644);
    },
    files: { '~/.claude/settings.json': { apiKeyHelper: '~HOME~/bin/keybroker-shim.js work' } },
    expect: { 'shim:apiKeyHelper': 'fail' },
    says: { 'shim:apiKeyHelper': ['is not executable', 'chmod +x'] },
  },
  {
    name: 'a shim by name that is not on PATH',
    files: { '~/.claude/settings.json': { apiKeyHelper: 'keybroker-shim work' } },
    env: { PATH: '/nonexistent-dir' },
    expect: { 'shim:apiKeyHelper': 'fail' },
    says: { 'shim:apiKeyHelper': ['not on PATH'] },
  },
  {
    name: "the shim's #!/usr/bin/env node finds no node on Claude Code's PATH",
    files: { '~/.claude/settings.json': { apiKeyHelper: HELPER } },
    env: { PATH: '/nonexistent-dir' },
    expect: { 'shim:apiKeyHelper': 'fail' },
    says: { 'shim:apiKeyHelper': ['node is not on'] },
  },
  {
    name: 'the helper TTL outlasts the profile TTL',
    files: userHelper,
    config: 'profiles:\n  work:\n    source: env:A\n    ttl: 2m\n',
    expect: { 'helper-ttl': 'warn' },
    says: { 'helper-ttl': ['every 5m (the default)', 'TTL of 2m'] },
  },
  {
    name: 'a helper TTL that fits the profile TTL',
    files: { '~/.claude/settings.json': { apiKeyHelper: HELPER, env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '60000' } } },
    config: 'profiles:\n  work:\n    source: env:A\n    ttl: 2m\n',
    expect: { 'helper-ttl': 'ok' },
  },
  {
    name: 'a helper TTL Claude Code cannot read',
    env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: 'five minutes' },
    files: userHelper,
    expect: { 'helper-ttl': 'warn' },
    says: { 'helper-ttl': ['not a positive number'] },
  },
  {
    name: "the helper's profile is not in the config",
    files: userHelper,
    config: 'profiles:\n  personal:\n    source: env:A\n',
    expect: { config: 'fail' },
    says: { config: ['no profile "work"', 'profiles: personal'] },
  },
  {
    name: 'a config with an error',
    files: userHelper,
    config: 'profiles:\n  work:\n    source: env:A\n    tll: 5m\n',
    expect: { config: 'fail' },
    says: { config: ['config.yaml:4', 'unknown key "tll"', 'keybroker config check'] },
  },
  {
    name: 'no config at all',
    files: userHelper,
    config: null,
    expect: { config: 'fail' },
    says: { config: ['no config file here'] },
  },
  {
    name: 'a socket directory others can enter',
    files: userHelper,
    dirs: { 'run/keybroker': 0o755 },
    expect: { socket: 'fail' },
    says: { socket: ['mode 0755', 'chmod 700'] },
  },
  {
    name: 'a socket directory that is a symbolic link',
    files: userHelper,
    setup: (home) => {
      fs.mkdirSync(path.join(home, 'run'), { mode: 0o700 });
      fs.mkdirSync(path.join(home, 'elsewhere'), { mode: 0o700 });
      fs.symlinkSync(path.join(home, 'elsewhere'), path.join(home, 'run', 'keybroker'));
    },
    expect: { socket: 'fail' },
    says: { socket: ['symbolic link'] },
  },
  {
    name: 'no daemon and autostart turned off in the settings env block',
    files: { '~/.claude/settings.json': { apiKeyHelper: HELPER, env: { KEYBROKER_NO_AUTOSTART: '1' } } },
    expect: { daemon: 'fail' },
    says: { daemon: ['autostart is off', 'keybroker service install'] },
  },
  {
    name: 'the socket path Claude Code sees comes from the settings env block',
    files: {
      '~/.claude/settings.json': { apiKeyHelper: HELPER, env: { KEYBROKER_SOCKET: '~HOME~/claude-sock/kb.sock' } },
    },
    expect: { socket: 'ok' },
    says: { socket: ['claude-sock/kb.sock (chosen by KEYBROKER_SOCKET)'] },
  },
  {
    name: '1Password through exec:op with a short TTL blows a service account budget',
    files: userHelper,
    config: 'profiles:\n  work:\n    source: exec:op read op://Private/Anthropic/credential\n    ttl: 1s\n',
    expect: { '1password': 'warn' },
    says: { '1password': ['exec:op profiles start op at most ~4800 times/hour', '1000 reads/hour'] },
  },
  {
    name: '1Password through exec:op with an hour-long TTL',
    files: userHelper,
    config: 'profiles:\n  work:\n    source: exec:op read op://Private/Anthropic/credential\n    ttl: 1h\n',
    expect: { '1password': 'ok' },
    says: { '1password': ['~2 times/hour'] },
  },
  {
    name: 'a settings file that is not JSON',
    files: { '~/.claude/settings.json': `{ "env": { "ANTHROPIC_API_KEY": "sk-ant-${SECRET}-8" }, }` },
    expect: { settings: 'fail', credential: 'warn' },
    says: { settings: ['is not valid JSON'] },
  },
];

function place(home: string, key: string): string {
  if (key.startsWith('~/')) return path.join(home, key.slice(2));
  if (key.startsWith('project/')) return path.join(home, 'project', key.slice('project/'.length));
  if (key.startsWith('managed/')) return path.join(home, 'managed', key.slice('managed/'.length));
  throw new Error(`bad place ${key}`);
}

function substitute(value: string | object, home: string): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  return text.replaceAll('~HOME~', home);
}

async function runCase(
  c: Case,
  extra: Partial<DoctorOptions> = {},
): Promise<{ checks: DoctorCheck[]; text: string; home: string }> {
  const home = privateTempDir('kb-doc-');
  fs.mkdirSync(path.join(home, 'project'));
  c.setup?.(home);
  for (const [dir, mode] of Object.entries(c.dirs ?? {})) {
    fs.mkdirSync(path.join(home, dir), { recursive: true });
    fs.chmodSync(path.join(home, dir), mode);
  }
  for (const [key, value] of Object.entries(c.files ?? {})) {
    const file = place(home, key);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, substitute(value, home));
  }
  if (c.config !== null) {
    fs.mkdirSync(path.join(home, '.config', 'keybroker'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(home, '.config', 'keybroker', 'config.yaml'), c.config ?? CONFIG, { mode: 0o600 });
  }
  const env = { HOME: home, PATH: process.env.PATH!, XDG_RUNTIME_DIR: path.join(home, 'run'), ...c.env };
  const checks = await runDoctor({
    env,
    home,
    cwd: path.join(home, 'project'),
    platform: 'linux',
    managedDir: path.join(home, 'managed'),
    uid: process.getuid?.(),
    version: VERSION,
    fetchProfiles: false,
    requestTimeoutMs: 1_000,
    ...extra,
  });
  return { checks, text: renderDoctor(checks), home };
}

describe('doctor over synthetic environments', () => {
  it.each(cases)('$name', async (c) => {
    const { checks, text } = await runCase(c);
    for (const [id, status] of Object.entries(c.expect)) {
      const found = checks.filter((k) => k.id === id);
      if (status === 'absent') expect(found, `${id} should be absent\n${text}`).toEqual([]);
      else
        expect(
          found.map((k) => k.status),
          `${id}\n${text}`,
        ).toContain(status);
    }
    for (const [id, needles] of Object.entries(c.says ?? {})) {
      const said = checks
        .filter((k) => k.id === id)
        .map((k) => `${k.message} ${k.fix ?? ''}`)
        .join('\n');
      for (const needle of needles) expect(said, `${id}\n${text}`).toContain(needle);
    }
    expect(text).not.toContain(SECRET);
    // One line per check, plus one per fix (each fix on its own line), plus the summary.
    const lines = text.split('\n').filter((l) => l !== '');
    expect(lines.filter((l) => /^\s+fix: /.test(l))).toHaveLength(checks.filter((c) => c.fix).length);
    expect(lines.filter((l) => !/^\s/.test(l))).toHaveLength(checks.length + 1);
    for (const l of lines) expect(l.match(/fix: /g)?.length ?? 0).toBeLessThanOrEqual(1);
  });
});

describe('doctor with a running daemon', () => {
  let daemon: DaemonHandle;
  let home: string;
  const secrets = { work: 'sk-ant-doctor-live-value-41', aws: 'aws-doctor-live-secret-42' };

  beforeAll(async () => {
    home = privateTempDir('kb-doc-live-');
    fs.mkdirSync(path.join(home, '.claude'));
    fs.writeFileSync(
      path.join(home, '.claude', 'settings.json'),
      JSON.stringify({ apiKeyHelper: HELPER, env: { CLAUDE_CODE_API_KEY_HELPER_TTL_MS: '300000' } }),
    );
    fs.writeFileSync(
      path.join(home, 'credentials'),
      `[static]\naws_access_key_id = AKIADOCTOR\naws_secret_access_key = ${secrets.aws}\n`,
      { mode: 0o600 },
    );
    daemon = await startDaemon({
      config: [
        'profiles:',
        '  work:',
        '    source: env:KB_DOCTOR_WORK',
        '  aws:',
        '    source: aws-credentials://static',
        '  broken:',
        '    source: env:KB_DOCTOR_UNSET',
        '  filed:',
        '    source: file:~/refresh.key',
        '',
      ].join('\n'),
      env: {
        KB_DOCTOR_WORK: secrets.work,
        AWS_SHARED_CREDENTIALS_FILE: path.join(home, 'credentials'),
        AWS_CONFIG_FILE: path.join(home, 'no-config'),
      },
    });
  });

  const options = (extra: Partial<DoctorOptions> = {}): DoctorOptions => ({
    env: { ...daemon.env, HOME: home },
    home,
    cwd: home,
    platform: 'linux',
    managedDir: path.join(home, 'managed'),
    uid: process.getuid?.(),
    version: VERSION,
    fetchProfiles: true,
    ...extra,
  });

  it('times each profile, checks AWS credentials by shape, and prints no value', async () => {
    const checks = await runDoctor(options());
    const text = renderDoctor(checks);
    const byId = new Map(checks.map((c) => [c.id, c]));
    expect(byId.get('daemon')).toMatchObject({
      status: 'ok',
      message: expect.stringContaining(`keybroker ${VERSION}`),
    });
    expect(byId.get('profile:work')).toMatchObject({
      status: 'ok',
      message: expect.stringMatching(/^env:KB_DOCTOR_WORK: fetched in \d+ ms, fresh for/),
    });
    expect(byId.get('profile:aws')).toMatchObject({
      status: 'ok',
      message: expect.stringContaining('AWS credentials'),
    });
    expect(byId.get('profile:broken')).toMatchObject({ status: 'fail', message: expect.stringContaining('NOT_FOUND') });
    expect(byId.get('socket')?.status).toBe('ok');
    for (const s of Object.values(secrets)) expect(text).not.toContain(s);

    const again = await runDoctor(options());
    expect(again.find((c) => c.id === 'profile:work')?.message).toMatch(/served from cache in \d+ ms/);
  });

  it('notices a daemon from another version and one reading another config', async () => {
    const checks = await runDoctor(
      options({ version: '9.9.9', configFlag: path.join(home, 'other.yaml'), fetchProfiles: false }),
    );
    expect(checks.find((c) => c.id === 'daemon')).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('this is 9.9.9'),
    });
    expect(checks.find((c) => c.id === 'daemon-config')).toMatchObject({ status: 'warn' });
    // Without fetching, only profiles whose last fetch already failed appear (as warnings with a fix).
    for (const c of checks.filter((k) => k.id.startsWith('profile:')))
      expect(c).toMatchObject({ status: 'warn', fix: expect.any(String) as string });
  });

  it('reports a failed refresh behind a fresh cached value, with the fix on its own line', async () => {
    const keyFile = path.join(daemon.dir, 'refresh.key');
    fs.writeFileSync(keyFile, 'sk-ant-doctor-refresh-43\n', { mode: 0o600 });
    expect((await daemon.request({ v: 1, op: 'get', profile: 'filed' })).ok).toBe(true);
    fs.chmodSync(keyFile, 0o644);
    const refreshed = await daemon.request({ v: 1, op: 'refresh', profile: 'filed' });
    expect(refreshed).toMatchObject({ ok: true, failed: [{ profile: 'filed', error: { code: 'PERMISSION_DENIED' } }] });
    for (const fetchProfiles of [true, false]) {
      const checks = await runDoctor(options({ fetchProfiles }));
      const filed = checks.find((c) => c.id === 'profile:filed')!;
      expect(filed.status).toBe('warn');
      expect(filed.message).toContain('PERMISSION_DENIED');
      expect(filed.message).not.toMatch(/run: /);
      // The error's own fix (its field), then the refresh that clears the warning.
      expect(filed.fix).toBe(`run: chmod 600 ${keyFile}, then: keybroker refresh filed`);
      const lines = renderDoctor(checks).split('\n');
      expect(lines.filter((l) => l.includes('profile:filed'))).toHaveLength(1);
      expect(lines[lines.findIndex((l) => l.includes('profile:filed')) + 1]).toMatch(/^\s+fix: run: chmod 600 /);
    }
    fs.chmodSync(keyFile, 0o600);
  });

  it('the CLI exits 1 when a check fails and 0 when none does', async () => {
    const env = { ...daemon.env, HOME: home };
    const failing = await run(process.execPath, [CLI, 'doctor'], { env, cwd: home });
    expect(failing.code).toBe(1);
    expect(failing.stdout).toMatch(/^fail +profile:broken +env:KB_DOCTOR_UNSET: NOT_FOUND/m);
    expect(failing.stdout).toMatch(/1 check failed/);
    const passing = await run(process.execPath, [CLI, 'doctor', '--no-fetch'], { env, cwd: home });
    expect(passing.stdout).toMatch(/^ok +credential +Claude Code will use apiKeyHelper/m);
    expect(passing.code).toBe(0);
    const json = await run(process.execPath, [CLI, 'doctor', '--no-fetch', '--json'], { env, cwd: home });
    expect((JSON.parse(json.stdout) as DoctorCheck[]).map((c) => c.id)).toContain('credential');
    for (const out of [failing.stdout, passing.stdout, json.stdout])
      for (const s of Object.values(secrets)) expect(out).not.toContain(s);
  });
});
