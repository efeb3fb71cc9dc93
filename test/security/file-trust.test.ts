// Whose key and token files keybroker trusts: a file: key, a Vault tokenFile and an AppRole
// secret-ID file are used only when owned by the daemon's user and readable by nobody else, or
// owned by root and writable by nobody else (a Kubernetes secret mount, a Vault Agent sink). About
// other users, so tested with other users: files chowned to nobody (65534), and a daemon run as a
// second user reading root's files. Needs root (CI runs as root); skipped with a reason otherwise.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_NODE_FLAGS } from '../../src/client/daemon-node-flags.js';
import {
  baseEnv,
  NATIVE_SHIM,
  privateTempDir,
  run,
  SETUP_SHIM,
  startDaemon,
  waitFor,
  type DaemonHandle,
  type RunResult,
} from '../helpers/daemon.js';
import type { FakeVault } from '../fakes/fake-vault.js';
import { killWhenDone } from '../helpers/cleanup.js';
import { installCopy, openToAll } from '../helpers/install-copy.js';
import { nodeFor, otherUser } from '../helpers/other-user.js';
import { startFakeVault } from '../helpers/vault.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot)
  console.log(
    'file-trust tests skipped: they need root to chown files to other users and to run a daemon as a second user',
  );

const NOBODY = 65534;
const KEY = 'sk-ant-api03-file-trust-7f3a';
const VAULT_KEY = 'sk-ant-api03-file-trust-vault-2c9e';
const SECRET_ID = 'sid-file-trust-5d81';

function writeOwned(file: string, text: string, mode: number, uid: number, gid = uid): void {
  fs.writeFileSync(file, text);
  fs.chownSync(file, uid, gid);
  fs.chmodSync(file, mode);
}

describe.skipIf(!isRoot)('key and token files owned by someone else or readable by others', () => {
  let fake: FakeVault;
  let d: DaemonHandle;
  let token: string;
  /** The shim `setup claude` writes (native where built, ~5 ms a run): the daemon's refusals are under test. */
  const shim = (args: string): Promise<RunResult> => d.shim(args);

  beforeAll(async () => {
    const server = await startFakeVault({ secrets: { 'secret/anthropic': { api_key: VAULT_KEY } } });
    ({ fake, token } = server);
    fake.createAppRole({ roleId: 'role-trust', secretId: SECRET_ID, read: ['secret/data/*'], tokenTtlSec: 3600 });
    const vault = (extra: string): string => `    source: vault://secret/anthropic#api_key\n    vault: { ${extra} }\n`;
    d = await startDaemon({
      config: [
        'profiles:',
        '  theirs:\n    source: file:~/theirs.key',
        `  vault-theirs:\n${vault('tokenFile: ~/theirs.token')}`,
        `  vault-open:\n${vault('tokenFile: ~/open.token')}`,
        `  vault-mine:\n${vault('tokenFile: ~/mine.token')}`,
        `  robot-open:\n${vault('auth: { method: approle, roleId: role-trust, secretIdFile: ~/open.secret-id }')}`,
        `  robot-mine:\n${vault('auth: { method: approle, roleId: role-trust, secretIdFile: ~/mine.secret-id }')}`,
        '',
      ].join('\n'),
      // The tokens come from the files under test, never from the environment.
      env: { ...server.env, VAULT_TOKEN: '' },
    });
    writeOwned(path.join(d.dir, 'theirs.key'), KEY, 0o600, NOBODY);
    writeOwned(path.join(d.dir, 'theirs.token'), token, 0o600, NOBODY);
    writeOwned(path.join(d.dir, 'open.token'), token, 0o644, 0);
    writeOwned(path.join(d.dir, 'mine.token'), token, 0o600, 0);
    writeOwned(path.join(d.dir, 'open.secret-id'), SECRET_ID, 0o644, 0);
    writeOwned(path.join(d.dir, 'mine.secret-id'), SECRET_ID, 0o600, 0);
  });

  it.each([
    ['theirs', 'a file: key owned by uid 65534'],
    ['vault-theirs', 'a Vault tokenFile owned by uid 65534'],
    ['vault-open', 'a Vault tokenFile readable by others (0644)'],
    ['robot-open', 'an AppRole secret-ID file readable by others (0644)'],
  ])('refuses %s: %s, with PERMISSION_DENIED (exit 11) and no secret in the error', async (profile) => {
    const r = await shim(profile);
    expect(r.code).toBe(11);
    expect(r.stdout).toBe('');
    for (const secret of [KEY, token, SECRET_ID, VAULT_KEY]) expect(r.stderr).not.toContain(secret);
  });

  it.each(['vault-mine', 'robot-mine'])('uses %s: private files of its own', async (profile) => {
    expect(await shim(profile)).toMatchObject({ code: 0, stdout: `${VAULT_KEY}\n` });
  });

  it('picks up a token file rewritten by `vault login` on the first try', async () => {
    const fresh = fake.createToken({ read: ['secret/data/*'] });
    expect((await shim('vault-mine')).code).toBe(0);
    fake.revokeToken(token);
    // vault login writes the new token to a temp file and renames it over the old one (mode 0600).
    const file = path.join(d.dir, 'mine.token');
    writeOwned(`${file}.tmp`, fresh, 0o600, 0);
    fs.renameSync(`${file}.tmp`, file);
    expect(await shim('vault-mine --refresh')).toMatchObject({ code: 0, stdout: `${VAULT_KEY}\n` });
  });
});

// ---- a daemon run as a second user, reading files root provisioned ----

/** Run a program as `user` from /, as a service manager would start it. */
const runAs = (user: { uid: number; gid: number }, command: string, args: string[], env: NodeJS.ProcessEnv) =>
  run(command, args, { env, user, cwd: '/' });

const second = otherUser();
/** Copying node and the install (with node_modules, from a checkout out of reach) takes a while under load. */
const COPY_TIMEOUT_MS = 120_000;
if (second.skip !== undefined) console.log(`file-trust tests as a second user skipped: ${second.skip}`);

describe.skipIf(second.skip !== undefined)('a daemon run by another user, reading files owned by root', () => {
  let user: { uid: number; gid: number };
  /** The build and node that user runs: copies in /tmp, since the checkout may be out of their reach. */
  let install: string;
  let node: string;
  let cli: string;
  /** The shim `setup claude` writes, as the user runs it: a node and its path, or the native one alone. */
  let shimCommand: [string, ...string[]];
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let token: string;

  beforeAll(async () => {
    if (second.skip !== undefined) return;
    user = second;
    install = privateTempDir('kb-trust-install-');
    const kb = installCopy(path.join(install, 'kb'), { user });
    openToAll(install);
    node = nodeFor(user, install);
    cli = kb.cli;
    // The native shim where it was built (~5 ms a run, where each Node shim run as the user is a
    // Node start): it goes beside the copy's Node shim, as an install lays them out.
    if (SETUP_SHIM === NATIVE_SHIM) {
      const native = path.join(install, 'kb', 'dist', 'native', 'keybroker-shim');
      fs.mkdirSync(path.dirname(native), { recursive: true, mode: 0o755 });
      fs.copyFileSync(NATIVE_SHIM, native);
      fs.chmodSync(native, 0o755);
      shimCommand = [native];
    } else shimCommand = [node, kb.shim];
    const vault = await startFakeVault({ secrets: { 'secret/anthropic': { api_key: VAULT_KEY } } });
    token = vault.token;
    dir = privateTempDir('kb-trust-');
    env = { ...baseEnv(dir), ...vault.env, VAULT_TOKEN: '' };
    env.PATH = `${path.dirname(node)}:${env.PATH ?? '/usr/bin:/bin'}`;
    const config = [
      'profiles:',
      '  mounted:\n    source: file:~/root-0644.key',
      '  open:\n    source: file:~/root-0666.key',
      '  theirs:\n    source: file:~/nobody.key',
      '  agent-sink:\n    source: vault://secret/anthropic#api_key\n    vault: { tokenFile: ~/root-0644.token }',
      '  open-sink:\n    source: vault://secret/anthropic#api_key\n    vault: { tokenFile: ~/root-0666.token }',
      '',
    ].join('\n');
    writeOwned(env.KEYBROKER_CONFIG!, config, 0o600, user.uid, user.gid);
    writeOwned(path.join(dir, 'root-0644.key'), KEY, 0o644, 0);
    writeOwned(path.join(dir, 'root-0666.key'), KEY, 0o666, 0);
    writeOwned(path.join(dir, 'nobody.key'), KEY, 0o600, NOBODY);
    writeOwned(path.join(dir, 'root-0644.token'), token, 0o644, 0);
    writeOwned(path.join(dir, 'root-0666.token'), token, 0o666, 0);
    fs.chownSync(dir, user.uid, user.gid);
    // With the daemon's Node options, as autostart and the units start it (no self-exec with them).
    const daemon = spawn(node, [...DAEMON_NODE_FLAGS, cli, 'daemon'], {
      env,
      uid: user.uid,
      gid: user.gid,
      cwd: '/',
      stdio: 'ignore',
    });
    killWhenDone(daemon);
    // (Its socket's file appears as it listens: polling it costs nothing, where each poll by a
    // shim run as the user started a Node process. The tests' shim runs show the user can run it.)
    await waitFor(() => fs.existsSync(env.KEYBROKER_SOCKET!), 10_000, 'the daemon to listen');
  }, COPY_TIMEOUT_MS);

  const shim = (profile: string): Promise<RunResult> => {
    const [command, ...args] = shimCommand;
    return runAs(user, command, [...args, profile], env);
  };

  it('uses a root-owned 0644 key file (a secret mount) and a root-owned 0644 Vault token (an agent sink)', async () => {
    expect(await shim('mounted')).toMatchObject({ code: 0, stdout: `${KEY}\n` });
    expect(await shim('agent-sink')).toMatchObject({ code: 0, stdout: `${VAULT_KEY}\n` });
  });

  it('refuses root-owned files anyone can write (0666), and files of a third user', async () => {
    for (const profile of ['open', 'open-sink', 'theirs']) {
      const r = await shim(profile);
      expect({ profile, code: r.code }).toEqual({ profile, code: 11 });
      expect(r.stderr).not.toContain(KEY);
      expect(r.stderr).not.toContain(token);
    }
  });
});
