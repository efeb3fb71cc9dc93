// `keybroker init` as a user runs it: the built CLI on a temporary HOME, scripted with flags (the
// key on stdin), on a pseudo-terminal (util-linux `script`) answering its questions, and with a
// real Secret Service (gnome-keyring on a private bus) where the key goes into the keychain.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_FILE, type AuditRecord } from '../../src/audit/audit-record.js';
import { ERROR_CODES, type StatusReply } from '../../src/protocol/messages.js';
import {
  baseEnv,
  CLI,
  filesHolding,
  privateTempDir,
  run,
  SETUP_SHIM,
  startDaemon,
  stopAutostarted,
  waitFor,
  shellQuote,
} from '../helpers/daemon.js';
import { SECRET_SERVICE_SKIP, startSecretService, type SecretService } from '../helpers/secret-service.js';

const SCRIPT = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));
const KEY = 'sk-ant-init-3f8a61c0d2e9';
/** doctor's verdict, the last line init prints. */
const VERDICT = /\n(all good|no failures, \d+ warnings?|\d+ checks? failed, \d+ warnings?)\n$/;
const FINGERPRINT = /fingerprint is ([0-9a-f]{12})/;

let dir: string;
let env: NodeJS.ProcessEnv;
const settingsFile = (): string => path.join(dir, '.claude', 'settings.json');
const configFile = (): string => env.KEYBROKER_CONFIG!;
const init = (args: string[], input?: string, extra: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [CLI, 'init', ...args], {
    env: { ...env, ...extra },
    cwd: dir,
    timeoutMs: 30_000,
    ...(input !== undefined && { input }),
  });

beforeEach(() => {
  dir = privateTempDir('kb-init-');
  env = baseEnv(dir);
});

describe.skipIf(SECRET_SERVICE_SKIP)('keybroker init, with a Secret Service', () => {
  let ss: SecretService;
  beforeAll(async () => {
    ss = await startSecretService();
  });

  it('--yes --paste: keyring:default, the key in the keychain and in no file, a fingerprint and never the key, doctor last', async () => {
    env = baseEnv(dir, ss.env);
    const r = await init(['--yes', '--paste'], `${KEY}\n`);
    expect(r.stderr).not.toContain(KEY);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(KEY);
    expect(r.stdout).toMatch(FINGERPRINT);
    expect(r.stdout).toMatch(VERDICT);
    expect(fs.readFileSync(configFile(), 'utf8')).toMatch(/^ {2}default:\n {4}source: keyring:default$/m);
    expect(await ss.secretTool(['lookup', 'service', 'keybroker', 'username', 'default'])).toMatchObject({
      code: 0,
      stdout: KEY,
    });
    expect(filesHolding(dir, KEY)).toEqual([]);
    // Claude Code was pointed at keybroker (--yes), and the helper it runs now serves the key.
    const helper = (JSON.parse(fs.readFileSync(settingsFile(), 'utf8')) as { apiKeyHelper: string }).apiKeyHelper;
    expect(helper).toBe(SETUP_SHIM);
    const served = await run('/bin/sh', ['-c', helper], { env: { ...env, KEYBROKER_NO_AUTOSTART: '0' } });
    await stopAutostarted(env);
    expect(served).toMatchObject({ code: 0, stdout: `${KEY}\n` });
    // The fingerprint init showed is the one the audit trail records for what was served (read from
    // its file, the records `keybroker audit --json` prints: the audit command is not under test).
    // The daemon appends its records in batches, the last as it stops: wait for the file to hold it.
    const trail = path.join(env.XDG_STATE_HOME!, 'keybroker', AUDIT_FILE);
    const fingerprints = (): string[] =>
      fs.existsSync(trail)
        ? fs
            .readFileSync(trail, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => (JSON.parse(l) as AuditRecord).fingerprint ?? '')
        : [];
    const shown = FINGERPRINT.exec(r.stdout)![1]!;
    await waitFor(() => fingerprints().includes(shown), 5_000, 'the audit record of the key served');
    expect(fingerprints()).toContain(shown);
  });
  it('with a daemon running: it reloads, and serves the pasted key at once, without fetching it', async () => {
    const daemon = await startDaemon({
      config: 'profiles:\n  other:\n    source: env:KB_INIT_OTHER\n',
      env: { ...ss.env, KB_INIT_OTHER: 'sk-other' },
    });
    env = daemon.env;
    const r = await init(['--paste', '--profile', 'work', '--no-setup-claude', '--no-service'], KEY);
    expect(r.code).toBe(0);
    // Asked over the socket: what the daemon serves is the point here, not a shim's output.
    expect(await daemon.request({ v: 1, op: 'get', profile: 'work' })).toMatchObject({ ok: true, value: KEY });
    const status = (await daemon.request({ v: 1, op: 'status' })) as StatusReply;
    expect(status.profiles.find((p) => p.name === 'work')?.fetches).toBe(0);
  });
});

describe('keybroker init, scripted', () => {
  it('without a keychain, --paste keeps the key in a 0600 file beside the config (file: source)', async () => {
    const r = await init(['--paste', '--no-setup-claude', '--no-service'], KEY);
    expect(r.code).toBe(0);
    const keyFile = path.join(dir, 'anthropic-key');
    expect(fs.readFileSync(configFile(), 'utf8')).toMatch(/^ {4}source: file:~\/anthropic-key$/m);
    expect(fs.readFileSync(keyFile, 'utf8')).toBe(`${KEY}\n`);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(fs.statSync(configFile()).mode & 0o777).toBe(0o600);
    expect(r.stdout).not.toContain(KEY);
    expect(r.stdout).toMatch(FINGERPRINT);
    expect(fs.existsSync(settingsFile())).toBe(false);
  });

  // (One test: the source's one fetch and replacing a profile of yours are one successful init,
  // ~0.45 s of CPU with its doctor.)
  it('--source exec:COMMAND is checked by one fetch, then written; a source that fails writes nothing; a profile of yours that reads another source is replaced only with --force, and backed up', async () => {
    const failing = await init(['--source', 'exec:echo "no key here" >&2; exit 3', '--yes']);
    expect(failing.code).toBe(ERROR_CODES.SOURCE_ERROR);
    expect(fs.existsSync(configFile())).toBe(false);
    expect(fs.existsSync(settingsFile())).toBe(false);

    const config = '# mine\nprofiles:\n  default:\n    source: env:MY_KEY\n';
    fs.writeFileSync(configFile(), config, { mode: 0o600 });
    const refused = await init(['--source', `exec:printf %s ${KEY}`, '--yes']);
    expect(refused.code).toBe(ERROR_CODES.USAGE);
    expect(fs.readFileSync(configFile(), 'utf8')).toBe(config);

    const r = await init(['--source', `exec:printf %s ${KEY}`, '--yes', '--force']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(KEY);
    expect(r.stdout).toMatch(FINGERPRINT);
    expect(fs.readFileSync(configFile(), 'utf8')).toBe(
      `# mine\nprofiles:\n  default:\n    source: exec:printf %s ${KEY}\n`,
    );
    const backups = fs.readdirSync(dir).filter((f) => f.startsWith('config.yaml.keybroker-backup-'));
    expect(backups).toHaveLength(1);
    expect(fs.readFileSync(path.join(dir, backups[0]!), 'utf8')).toBe(config);
    expect((JSON.parse(fs.readFileSync(settingsFile(), 'utf8')) as { apiKeyHelper: string }).apiKeyHelper).toBe(
      SETUP_SHIM,
    );
  });

  it('--adopt makes the apiKeyHelper in use the profile, and switches it', async () => {
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'get-anthropic-key'), `#!/bin/sh\necho ${KEY}\n`, { mode: 0o755 });
    fs.mkdirSync(path.dirname(settingsFile()));
    fs.writeFileSync(settingsFile(), JSON.stringify({ apiKeyHelper: 'get-anthropic-key', model: 'opus' }));
    const r = await init(['--adopt', '--yes'], undefined, { PATH: `${bin}:${env.PATH}` });
    expect(r.code).toBe(0);
    expect(fs.readFileSync(configFile(), 'utf8')).toMatch(/^ {2}default:\n {4}source: exec:get-anthropic-key$/m);
    expect(JSON.parse(fs.readFileSync(settingsFile(), 'utf8'))).toMatchObject({
      apiKeyHelper: SETUP_SHIM,
      model: 'opus',
    });
    expect(r.stdout).toMatch(VERDICT);
  });

  it('without a terminal and without flags: a usage error (exit 2), and the config untouched', async () => {
    const config = 'profiles:\n  default:\n    source: env:ANTHROPIC_API_KEY\n';
    fs.writeFileSync(configFile(), config, { mode: 0o600 });
    const r = await init([]);
    expect(r.code).toBe(ERROR_CODES.USAGE);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('--source');
    expect(fs.readFileSync(configFile(), 'utf8')).toBe(config);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.yaml']);
    // A source alone is not enough either: each question needs its flag, or --yes.
    expect((await init(['--source', 'env:ANTHROPIC_API_KEY'])).code).toBe(ERROR_CODES.USAGE);
    expect(fs.readFileSync(configFile(), 'utf8')).toBe(config);
  });
});

describe.skipIf(!SCRIPT)('keybroker init on a terminal', () => {
  it('asks where the key is, reads it without showing it, asks about Claude Code and the service, and ends with doctor', async () => {
    const proc = spawn(SCRIPT!, ['-qec', `exec ${shellQuote(process.execPath)} ${shellQuote(CLI)} init`, '/dev/null'], {
      env: { ...env, SHELL: '/bin/sh' },
      cwd: dir,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const answer = async (prompt: string, text: string): Promise<void> => {
      await waitFor(() => out.includes(prompt) || proc.exitCode !== null, 20_000, `the prompt "${prompt}"`);
      proc.stdin.write(text);
    };
    try {
      await answer('Choice [1]:', '1\r');
      await answer('Key for profile "default"', `${KEY}\r`);
      await answer('Point Claude Code at keybroker', '\r');
      await answer('Run the daemon as', 'n\r');
      expect(await exit).toBe(0);
    } finally {
      proc.kill();
    }
    // Nothing typed at the key prompt reached the terminal.
    expect(out).not.toContain(KEY);
    expect(out).toMatch(FINGERPRINT);
    // On a terminal doctor's verdict is in colour: the words are the same.
    expect(stripVTControlCharacters(out).replace(/\r\n/g, '\n')).toMatch(VERDICT);
    expect(fs.readFileSync(path.join(dir, 'anthropic-key'), 'utf8')).toBe(`${KEY}\n`);
    expect((JSON.parse(fs.readFileSync(settingsFile(), 'utf8')) as { apiKeyHelper: string }).apiKeyHelper).toBe(
      SETUP_SHIM,
    );
  });
});
