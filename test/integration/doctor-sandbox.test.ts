// doctor's sandbox checks, table-driven over Claude Code settings files (user, project, local,
// managed) in a temporary home: could the agent's sandboxed commands reach the socket, the config,
// a key file, the state or a credential variable — or run outside the sandbox? Each case asserts
// check ids and statuses, never wording. The keybroker config has one file: key (~/keys/anthropic)
// and one env: profile (KB_SBX_CI); the socket is under XDG_RUNTIME_DIR, so the state directory
// (~/.local/state/keybroker) is a directory of its own.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runDoctor, type CheckStatus, type DoctorCheck } from '../../src/integration/doctor.js';
import { VERSION } from '../../src/version.js';
import { privateTempDir } from '../helpers/daemon.js';

const CONFIG = 'profiles:\n  default:\n    source: file:~/keys/anthropic\n  ci:\n    source: env:KB_SBX_CI\n';
/** The same, with a profile whose key sits in the OS keychain (no file to deny). */
const KEYCHAIN_CONFIG = `${CONFIG}  desk:\n    source: keyring:desk\n`;
/** What `setup claude --sandbox` writes for that config (test/integration/setup-sandbox.test.ts). */
const DENY = ['~/.config/keybroker', '~/.local/state/keybroker', '~/keys/anthropic'];
const ON = {
  enabled: true,
  failIfUnavailable: true,
  allowUnsandboxedCommands: false,
  filesystem: { denyRead: DENY },
  credentials: { envVars: [{ name: 'KB_SBX_CI', mode: 'deny' }] },
};
/** And the Read(…) deny rules that keep Claude Code's own file tools out. */
const PERMISSIONS = { deny: DENY.map((p) => `Read(${p})`) };
const READS = ['sandbox-config', 'sandbox-keys', 'sandbox-state'] as const;
const ALL_OK = Object.fromEntries(
  ['sandbox', 'sandbox-escape', 'sandbox-socket', ...READS, 'sandbox-env', 'sandbox-file-tools'].map((id) => [
    id,
    'ok' as const,
  ]),
);

type Files = Record<string, object>;

interface Case {
  name: string;
  /** Settings by place: "~/…", "project/…", "managed/…"; "~HOME~" in a string is the home directory. */
  files: Files;
  env?: Record<string, string>;
  platform?: NodeJS.Platform;
  config?: string;
  setup?: (home: string) => void;
  expect: Record<string, CheckStatus | 'absent'>;
}

const user = (sandbox: object, more: object = { permissions: PERMISSIONS }): Files => ({
  '~/.claude/settings.json': { sandbox, ...more },
});

/** ~/keys/anthropic, the key file the config names, as a link to the real file in ~/vault. */
function linkedKeyFile(home: string): void {
  fs.mkdirSync(path.join(home, 'vault'), { mode: 0o700 });
  fs.writeFileSync(path.join(home, 'vault', 'anthropic'), 'sk-x\n', { mode: 0o600 });
  fs.mkdirSync(path.join(home, 'keys'), { mode: 0o700 });
  fs.symlinkSync(path.join(home, 'vault', 'anthropic'), path.join(home, 'keys', 'anthropic'));
}

const cases: Case[] = [
  {
    name: 'no sandbox settings: the sandbox is off, and nothing else is said',
    files: {},
    expect: { sandbox: 'warn', 'sandbox-escape': 'absent', 'sandbox-keys': 'absent', 'sandbox-socket': 'absent' },
  },
  {
    // (Also the cases with no excludedCommands and no keyring: profile: the same settings and config.)
    name: 'what setup claude --sandbox writes: every way closed; no excludedCommands and no keyring: profile, so neither check',
    files: user(ON),
    expect: { ...ALL_OK, 'sandbox-excluded': 'absent', 'sandbox-keychain': 'absent' },
  },
  {
    name: 'the same in managed settings',
    files: { 'managed/managed-settings.json': { sandbox: ON, permissions: PERMISSIONS } },
    expect: ALL_OK,
  },
  {
    name: 'no Read(…) deny rules: Claude Code’s file tools are one permission away',
    files: user(ON, {}),
    expect: { 'sandbox-file-tools': 'warn', 'sandbox-keys': 'ok' },
  },
  {
    name: 'Read(…) deny rules alone: Claude Code merges them into the sandbox’s denyRead',
    files: user({ ...ON, filesystem: undefined }),
    expect: { 'sandbox-file-tools': 'ok', 'sandbox-config': 'ok', 'sandbox-keys': 'ok', 'sandbox-state': 'ok' },
  },
  {
    name: 'a Read(…) rule relative to the project (/…) does not reach the home directory',
    files: user(
      { ...ON, filesystem: undefined },
      { permissions: { deny: ['Read(/keys/**)', ...PERMISSIONS.deny.slice(0, 2)] } },
    ),
    expect: { 'sandbox-file-tools': 'warn', 'sandbox-keys': 'warn', 'sandbox-config': 'ok' },
  },
  {
    name: 'on, but unsandboxed commands allowed (the default)',
    files: user({ ...ON, allowUnsandboxedCommands: undefined }),
    expect: { sandbox: 'ok', 'sandbox-escape': 'warn' },
  },
  {
    name: 'allowAllUnixSockets: the socket is reachable',
    files: user({ ...ON, network: { allowAllUnixSockets: true } }),
    expect: { 'sandbox-socket': 'warn', 'sandbox-keys': 'ok' },
  },
  {
    name: 'allowUnixSockets naming the socket directory, on macOS',
    files: user({ ...ON, network: { allowUnixSockets: ['~HOME~/run/keybroker'] } }),
    platform: 'darwin',
    expect: { 'sandbox-socket': 'warn' },
  },
  {
    name: 'allowUnixSockets naming the socket, on Linux, which ignores it',
    files: user({ ...ON, network: { allowUnixSockets: ['~HOME~/run/keybroker/keybroker.sock'] } }),
    expect: { 'sandbox-socket': 'ok' },
  },
  {
    name: 'excludedCommands with cat: a way to a key file',
    files: user({ ...ON, excludedCommands: ['docker:*', 'cat:*'] }),
    expect: { 'sandbox-excluded': 'warn' },
  },
  {
    name: 'excludedCommands with keybroker-shim',
    files: user({ ...ON, excludedCommands: ['/usr/local/bin/keybroker-shim'] }),
    expect: { 'sandbox-excluded': 'warn' },
  },
  {
    name: 'excludedCommands with docker only',
    files: user({ ...ON, excludedCommands: ['docker *'] }),
    expect: { 'sandbox-excluded': 'ok' },
  },
  {
    name: 'denyRead without the key file',
    files: user({ ...ON, filesystem: { denyRead: DENY.filter((p) => !p.startsWith('~/keys')) } }, {}),
    expect: { 'sandbox-keys': 'warn', 'sandbox-config': 'ok', 'sandbox-state': 'ok' },
  },
  {
    name: 'denyRead entries spread over user, project and managed files (lists merge)',
    files: {
      '~/.claude/settings.json': { sandbox: { ...ON, filesystem: { denyRead: ['~/.config/keybroker'] } } },
      'project/.claude/settings.json': { sandbox: { filesystem: { denyRead: ['//~HOME~/keys'] } } },
      'managed/managed-settings.json': { sandbox: { filesystem: { denyRead: ['~/.local/state/keybroker/**'] } } },
    },
    expect: { 'sandbox-config': 'ok', 'sandbox-keys': 'ok', 'sandbox-state': 'ok' },
  },
  {
    name: 'a relative denyRead entry in project settings: relative to the project',
    files: user({ ...ON, filesystem: { denyRead: ['~/.config/keybroker', '~/.local/state/keybroker'] } }, {}),
    setup: (home) => {
      fs.mkdirSync(path.join(home, 'project', '.claude'), { recursive: true });
      fs.writeFileSync(
        path.join(home, 'project', '.claude', 'settings.json'),
        JSON.stringify({ sandbox: { filesystem: { denyRead: ['../keys'] } } }),
      );
    },
    expect: { 'sandbox-keys': 'ok' },
  },
  {
    name: 'a credentials.files deny entry hides the key file too',
    files: user({
      ...ON,
      filesystem: { denyRead: DENY.filter((p) => !p.startsWith('~/keys')) },
      credentials: { ...ON.credentials, files: [{ path: '~/keys/anthropic', mode: 'deny' }] },
    }),
    expect: { 'sandbox-keys': 'ok' },
  },
  {
    name: 'allowRead opening the config directory again',
    files: user({ ...ON, filesystem: { denyRead: DENY, allowRead: ['~/.config/keybroker/config.yaml'] } }),
    expect: { 'sandbox-config': 'warn', 'sandbox-keys': 'ok' },
  },
  {
    name: 'filesystem isolation off (user settings)',
    files: user({ ...ON, filesystem: { denyRead: DENY, disabled: true } }),
    expect: { 'sandbox-config': 'warn', 'sandbox-keys': 'warn', 'sandbox-state': 'warn', 'sandbox-socket': 'ok' },
  },
  {
    name: 'filesystem isolation off in project settings only: ignored, as Claude Code does',
    files: {
      ...user(ON),
      'project/.claude/settings.json': { sandbox: { filesystem: { disabled: true } } },
    },
    expect: { 'sandbox-config': 'ok', 'sandbox-keys': 'ok', 'sandbox-state': 'ok' },
  },
  {
    name: 'project settings turn the sandbox off over the user’s',
    files: { ...user(ON), 'project/.claude/settings.json': { sandbox: { enabled: false } } },
    expect: { sandbox: 'warn', 'sandbox-keys': 'absent' },
  },
  {
    name: 'local settings turn it off, but managed settings hold unsandboxed commands closed (strict): still on',
    files: {
      ...user(ON),
      'project/.claude/settings.local.json': { sandbox: { enabled: false, network: { allowAllUnixSockets: true } } },
      'managed/managed-settings.json': { sandbox: { allowUnsandboxedCommands: false } },
    },
    expect: { sandbox: 'ok', 'sandbox-socket': 'ok' },
  },
  {
    name: 'project settings open all Unix sockets (not strict): reachable',
    files: { ...user(ON), 'project/.claude/settings.json': { sandbox: { network: { allowAllUnixSockets: true } } } },
    expect: { 'sandbox-socket': 'warn' },
  },
  {
    name: 'project settings allow unsandboxed commands, but user settings hold them closed',
    files: { ...user(ON), 'project/.claude/settings.json': { sandbox: { allowUnsandboxedCommands: true } } },
    expect: { 'sandbox-escape': 'ok' },
  },
  {
    name: 'an env: profile’s variable in Claude Code’s environment, not hidden',
    files: user({ ...ON, credentials: undefined }),
    env: { KB_SBX_CI: 'sk-sbx-ci-value' },
    expect: { 'sandbox-env': 'warn' },
  },
  {
    name: 'the same variable, hidden by credentials.envVars',
    files: user(ON),
    env: { KB_SBX_CI: 'sk-sbx-ci-value' },
    expect: { 'sandbox-env': 'ok' },
  },
  {
    // A denied directory hides the link in it; what the link points at is elsewhere.
    name: 'a key file that is a symbolic link, with only the directory holding the link denied: its target stays readable',
    files: user({ ...ON, filesystem: { denyRead: [...DENY.filter((p) => !p.startsWith('~/keys')), '~/keys'] } }, {}),
    setup: linkedKeyFile,
    expect: { 'sandbox-keys': 'warn' },
  },
  {
    // The sandbox resolves a denied path through its links (bwrap binds over the target).
    name: 'the same link, denied by name: its target is what the sandbox hides',
    files: user(ON),
    setup: linkedKeyFile,
    expect: { 'sandbox-keys': 'ok' },
  },
  {
    name: 'the same link, with its target denied too',
    files: user({ ...ON, filesystem: { denyRead: [...DENY, '~/vault/anthropic'] } }),
    setup: linkedKeyFile,
    expect: { 'sandbox-keys': 'ok' },
  },
  {
    name: 'enableWeakerNestedSandbox: the host /proc readable inside',
    files: user({ ...ON, enableWeakerNestedSandbox: true }),
    expect: { 'sandbox-proc': 'warn', 'sandbox-keys': 'ok' },
  },
  {
    name: 'a keyring: profile on Linux: the Secret Service is behind the session bus, which the sandbox refuses',
    files: user(ON),
    config: KEYCHAIN_CONFIG,
    expect: { ...ALL_OK, 'sandbox-keychain': 'ok' },
  },
  {
    name: 'a keyring: profile with allowAllUnixSockets: the session bus is reachable',
    files: user({ ...ON, network: { allowAllUnixSockets: true } }),
    config: KEYCHAIN_CONFIG,
    expect: { 'sandbox-keychain': 'warn', 'sandbox-socket': 'warn' },
  },
  {
    name: 'a keyring: profile on macOS: the login keychain, not measured there',
    files: user(ON),
    config: KEYCHAIN_CONFIG,
    platform: 'darwin',
    expect: { 'sandbox-keychain': 'warn' },
  },
  {
    name: 'on Linux without bubblewrap and socat on Claude Code’s PATH',
    files: user(ON),
    env: { PATH: '/nonexistent' },
    expect: { sandbox: 'warn', 'sandbox-keys': 'ok' },
  },
];

/**
 * A `bwrap` that starts no sandbox (it is `true`), first on Claude Code's PATH in the cases that
 * assert nothing about the sandbox's availability. The real one's probe (a network namespace,
 * ~20 ms of CPU) stays in the cases that check the `sandbox` id; no other check depends on it.
 */
let standInBin: string;
beforeAll(() => {
  standInBin = privateTempDir('kb-docsbx-bin-');
  fs.symlinkSync('/bin/true', path.join(standInBin, 'bwrap'));
});

async function runCase(c: Case): Promise<DoctorCheck[]> {
  const home = privateTempDir('kb-docsbx-');
  fs.mkdirSync(path.join(home, 'project'));
  c.setup?.(home);
  for (const [place, value] of Object.entries(c.files)) {
    const file = place.startsWith('~/')
      ? path.join(home, place.slice(2))
      : place.startsWith('project/')
        ? path.join(home, 'project', place.slice('project/'.length))
        : path.join(home, 'managed', place.slice('managed/'.length));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(value).replaceAll('~HOME~', home));
  }
  fs.mkdirSync(path.join(home, '.config', 'keybroker'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(home, '.config', 'keybroker', 'config.yaml'), c.config ?? CONFIG, { mode: 0o600 });
  const PATH = 'sandbox' in c.expect ? process.env.PATH! : `${standInBin}:${process.env.PATH!}`;
  return await runDoctor({
    env: { HOME: home, PATH, XDG_RUNTIME_DIR: path.join(home, 'run'), ...c.env },
    home,
    cwd: path.join(home, 'project'),
    platform: c.platform ?? 'linux',
    managedDir: path.join(home, 'managed'),
    uid: process.getuid?.(),
    version: VERSION,
    fetchProfiles: false,
    requestTimeoutMs: 500,
  });
}

describe.runIf(process.platform === 'linux')('doctor: Claude Code’s sandbox', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const checks = await runCase(c);
    const status = (id: string): CheckStatus | 'absent' => checks.find((k) => k.id === id)?.status ?? 'absent';
    expect(Object.fromEntries(Object.keys(c.expect).map((id) => [id, status(id)]))).toEqual(c.expect);
    // Names, never values.
    expect(JSON.stringify(checks)).not.toContain('sk-sbx-ci-value');
  });
});
