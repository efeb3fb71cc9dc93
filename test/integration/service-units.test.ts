// The service templates rendered with absolute paths: their content, systemd's own verifier where
// it can run, and the launchd plist parsed back with a plist parser.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parse as parsePlist } from 'plist';
import { describe, expect, it } from 'vitest';
import { layoutAt } from '../../src/integration/install-layout.js';
import {
  LAUNCHD_LABEL,
  LAUNCHD_PLIST,
  renderLaunchdPlist,
  renderSystemdUnits,
  renderTemplate,
  servicePath,
  systemdWord,
  type UnitInputs,
} from '../../src/integration/service-units.js';
import { resolveSocketPath } from '../../src/client/socket-path.js';
import { privateTempDir, ROOT, waitFor } from '../helpers/daemon.js';
import { sendRequest } from '../../src/client/client.js';
import type { AuditStatus, StatusReply } from '../../src/protocol/messages.js';
import { unitInputs, type ServiceHost } from '../../src/integration/service-manager.js';
import { DAEMON_NODE_FLAGS } from '../../src/client/daemon-node-flags.js';

const layout = layoutAt(ROOT);
const tmp = privateTempDir('kb-units-');

const plainInputs: UnitInputs = {
  node: process.execPath,
  entry: path.join(ROOT, 'dist', 'src', 'cli', 'main.js'),
  path: servicePath('linux', process.execPath, '/home/ada'),
  configDir: '/home/ada/.config/keybroker',
  stateDir: '/home/ada/.local/state/keybroker',
  logDir: '/Users/ada/Library/Logs/keybroker',
};

/** systemd's reading of one command line: C escapes inside double quotes, then %% and $$. */
function systemdCommandWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    const raw = m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!;
    words.push(raw.replace(/%%/g, '%').replace(/\$\$/g, '$'));
  }
  return words;
}

function settingOf(unit: string, key: string): string[] {
  return unit
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

describe('systemd units', () => {
  it("run the daemon with the absolute node and entry file, and socket activation on the shim's default path", () => {
    const { service, socket } = renderSystemdUnits(plainInputs, layout.systemdDir);
    expect(service).not.toContain('{{');
    expect(systemdCommandWords(settingOf(service, 'ExecStart')[0]!)).toEqual([
      process.execPath,
      ...DAEMON_NODE_FLAGS,
      plainInputs.entry,
      'daemon',
      '--telemetry-env',
    ]);
    expect(settingOf(socket, 'ListenStream')).toEqual(['%t/keybroker/keybroker.sock']);
    // %t is the user manager's XDG_RUNTIME_DIR: the same path the shim resolves by default.
    expect(settingOf(socket, 'ListenStream')[0]!.replace('%t', '/run/user/1000')).toBe(
      resolveSocketPath({ env: { XDG_RUNTIME_DIR: '/run/user/1000' }, platform: 'linux', home: '/home/ada' }).path,
    );
    expect(settingOf(socket, 'SocketMode')).toEqual(['0600']);
    expect(settingOf(socket, 'DirectoryMode')).toEqual(['0700']);
    expect(settingOf(service, 'Requires')).toEqual(['keybroker.socket']);
  });

  it('carry the hardening a user service can have', () => {
    const { service } = renderSystemdUnits(plainInputs, layout.systemdDir);
    const expected: Record<string, string> = {
      UMask: '0077',
      RuntimeDirectory: 'keybroker',
      RuntimeDirectoryMode: '0700',
      RuntimeDirectoryPreserve: 'yes',
      NoNewPrivileges: 'yes',
      LimitCORE: '0',
      MemorySwapMax: '0',
      PrivateUsers: 'yes',
      PrivateTmp: 'yes',
      ProtectSystem: 'strict',
      Restart: 'on-failure',
    };
    for (const [key, value] of Object.entries(expected)) expect(settingOf(service, key), key).toEqual([value]);
    expect(settingOf(service, 'ReadWritePaths')[0]!.split(' ')).toContain('/home/ada/.config/keybroker');
    // "-": a missing state directory must not stop the unit.
    expect(settingOf(service, 'ReadWritePaths')[0]!.split(' ')).toContain('-/home/ada/.local/state/keybroker');
    expect(settingOf(service, 'Environment')).toEqual([`"PATH=${plainInputs.path.join(':')}"`]);
  });

  it('escape paths with spaces, %, $ and quotes, and bake in a non-default config path', () => {
    const odd: UnitInputs = {
      ...plainInputs,
      entry: '/opt/key broker/100%/$HOME/"q"/main.js',
      config: '/home/ada/my keys/%h.yaml',
      configDir: '/home/ada/my keys',
    };
    const { service } = renderSystemdUnits(odd, layout.systemdDir);
    expect(systemdCommandWords(settingOf(service, 'ExecStart')[0]!)).toEqual([
      process.execPath,
      ...DAEMON_NODE_FLAGS,
      odd.entry,
      'daemon',
      '--telemetry-env',
    ]);
    expect(settingOf(service, 'Environment')).toContain('"KEYBROKER_CONFIG=/home/ada/my keys/%%h.yaml"');
    expect(systemdCommandWords(settingOf(service, 'ReadWritePaths')[0]!)[0]).toBe('/home/ada/my keys');
    expect(systemdWord('/plain/path')).toBe('/plain/path');
  });

  it('refuse relative paths and control characters', () => {
    expect(() => renderSystemdUnits({ ...plainInputs, node: 'node' }, layout.systemdDir)).toThrow(
      expect.objectContaining({ code: 'USAGE' }),
    );
    expect(() => renderSystemdUnits({ ...plainInputs, entry: '/a\nExecStartPre=/bin/rm' }, layout.systemdDir)).toThrow(
      expect.objectContaining({ code: 'USAGE' }),
    );
  });

  it('pass systemd-analyze verify', (ctx) => {
    const analyze = '/usr/bin/systemd-analyze';
    if (!fs.existsSync(analyze)) {
      ctx.skip('systemd-analyze is not installed');
      return;
    }
    // verify needs a runtime directory for its private manager; no real user manager is needed.
    const runtime = privateTempDir('kb-xdg-');
    const dir = path.join(tmp, 'verify');
    fs.mkdirSync(dir, { recursive: true });
    const verify = (units: { service: string; socket: string }) => {
      fs.writeFileSync(path.join(dir, 'keybroker.service'), units.service);
      fs.writeFileSync(path.join(dir, 'keybroker.socket'), units.socket);
      return spawnSync(
        analyze,
        ['--user', 'verify', path.join(dir, 'keybroker.socket'), path.join(dir, 'keybroker.service')],
        {
          env: { PATH: process.env.PATH, XDG_RUNTIME_DIR: runtime, HOME: tmp },
          encoding: 'utf8',
          timeout: 20_000,
        },
      );
    };
    const good = verify(
      renderSystemdUnits(
        { ...plainInputs, entry: '/opt/key broker/100%/main.js', config: '/home/ada/c.yaml' },
        layout.systemdDir,
      ),
    );
    if (
      /Failed to (initialize|connect|look ?up)|not supported|Permission denied/i.test(good.stderr) &&
      good.status !== 0
    ) {
      ctx.skip(`systemd-analyze verify cannot run here: ${good.stderr.split('\n')[0]}`);
      return;
    }
    expect(good.stderr).toBe('');
    expect(good.status).toBe(0);
    // The verifier is real: a unit it must reject is rejected.
    const bad = verify(renderSystemdUnits({ ...plainInputs, node: path.join(tmp, 'no-such-node') }, layout.systemdDir));
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('no-such-node');
  });
});

describe('launchd plist', () => {
  const macInputs: UnitInputs = {
    ...plainInputs,
    node: '/opt/homebrew/Cellar/node/22.1.0/bin/node',
    entry: '/Users/ada/Tools & Things/<keybroker>/dist/src/cli/main.js',
    path: servicePath('darwin', '/opt/homebrew/Cellar/node/22.1.0/bin/node', '/Users/ada'),
    configDir: '/Users/ada/.config/keybroker',
    logDir: '/Users/ada/Library/Logs/keybroker',
  };

  it('parses as a LaunchAgent that runs the daemon at load and after a crash', () => {
    const xml = renderLaunchdPlist(macInputs, layout.launchdDir);
    expect(LAUNCHD_PLIST).toBe(`${LAUNCHD_LABEL}.plist`);
    const plist = parsePlist(xml) as Record<string, unknown>;
    expect(plist.Label).toBe(LAUNCHD_LABEL);
    expect(plist.ProgramArguments).toEqual([
      macInputs.node,
      ...DAEMON_NODE_FLAGS,
      macInputs.entry,
      'daemon',
      '--telemetry-env',
    ]);
    expect(plist.RunAtLoad).toBe(true);
    expect(plist.KeepAlive).toEqual({ SuccessfulExit: false });
    expect(plist.Umask).toBe(0o077);
    expect(plist.SoftResourceLimits).toEqual({ Core: 0 });
    expect(plist.HardResourceLimits).toEqual({ Core: 0 });
    expect(plist.StandardErrorPath).toBe('/Users/ada/Library/Logs/keybroker/daemon.log');
    expect(plist.StandardOutPath).toBe('/Users/ada/Library/Logs/keybroker/daemon.log');
    const env = plist.EnvironmentVariables as Record<string, string>;
    expect(Object.keys(env)).toEqual(['PATH']);
    const dirs = env.PATH!.split(':');
    expect(dirs[0]).toBe('/opt/homebrew/Cellar/node/22.1.0/bin');
    expect(dirs).toEqual(expect.arrayContaining(['/opt/homebrew/bin', '/usr/local/bin', '/usr/bin', '/bin']));
  });

  it('sets KEYBROKER_CONFIG only for a config outside the default place', () => {
    const plist = parsePlist(
      renderLaunchdPlist({ ...macInputs, config: '/Users/ada/keys & more/config.yaml' }, layout.launchdDir),
    ) as Record<string, unknown>;
    expect(plist.EnvironmentVariables).toMatchObject({ KEYBROKER_CONFIG: '/Users/ada/keys & more/config.yaml' });
  });
});

describe('template rendering', () => {
  it('drops a line whose placeholder has no value and refuses an unfilled one', () => {
    expect(renderTemplate('a={{A}}\nb={{B}}\nc', { A: '1', B: undefined }, 't')).toBe('a=1\nc');
    // Names the placeholder left unfilled.
    expect(() => renderTemplate('x={{MISSING}}', {}, 't')).toThrow(
      expect.objectContaining({ code: 'INTERNAL', message: expect.stringContaining('{{MISSING}}') }),
    );
  });

  it("gives a service node's directory first and the usual tool directories", () => {
    expect(servicePath('linux', '/home/ada/.nvm/versions/node/v20/bin/node', '/home/ada')).toEqual([
      '/home/ada/.nvm/versions/node/v20/bin',
      '/home/ada/.local/bin',
      '/usr/local/sbin',
      '/usr/local/bin',
      '/usr/sbin',
      '/usr/bin',
      '/sbin',
      '/bin',
    ]);
    expect(servicePath('darwin', '/usr/local/bin/node', '/Users/ada')[0]).toBe('/usr/local/bin');
  });
});

// ProtectSystem=strict makes the whole file system read-only for the daemon except the unit's
// ReadWritePaths. Emulated with bubblewrap (a read-only bind of / and a writable bind of each
// existing ReadWritePaths entry, as systemd's "-" prefix skips missing ones): the audit trail,
// under ~/.local/state/keybroker, must be written, not dropped with EROFS.
const bwrapWorks = spawnSync('bwrap', ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', 'true']).status === 0;
describe.skipIf(!bwrapWorks)('the systemd unit, with its file system protection emulated', () => {
  it('lets the daemon write its audit trail: no record dropped', async () => {
    const home = privateTempDir('kb-unit-home-');
    const host = { platform: 'linux', home, env: {}, node: process.execPath, entry: plainInputs.entry };
    const inputs = unitInputs(host as unknown as ServiceHost);
    for (const dir of [inputs.configDir, inputs.stateDir]) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(
      path.join(inputs.configDir, 'config.yaml'),
      'profiles:\n  default:\n    source: env:KB_UNIT_KEY\n',
      {
        mode: 0o600,
      },
    );
    const { service } = renderSystemdUnits(inputs, layout.systemdDir);
    const writable = systemdCommandWords(settingOf(service, 'ReadWritePaths')[0]!)
      .map((w) => w.replace(/^-/, '').replace(/%h/g, home))
      .filter((p) => fs.existsSync(p));
    const sockDir = path.join(home, 'run');
    fs.mkdirSync(sockDir, { mode: 0o700 });
    const socket = path.join(sockDir, 'kb.sock');
    const binds = [sockDir, ...writable].flatMap((p) => ['--bind', p, p]);
    // The service's environment: no XDG_* of the installing shell, so the state directory is ~/.local/state.
    const env = { PATH: process.env.PATH, HOME: home, KEYBROKER_SOCKET: socket, KB_UNIT_KEY: 'sk-unit-test' };
    const daemon = spawn(
      'bwrap',
      ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', ...binds, process.execPath, inputs.entry, 'daemon'],
      { env, stdio: 'ignore' },
    );
    try {
      // Answering, not only bound: the socket's file exists a moment before it listens.
      await waitFor(
        async () =>
          fs.existsSync(socket) &&
          (await sendRequest(socket, { v: 1, op: 'ping' }, { timeoutMs: 2_000 }).then(
            (r) => r.ok,
            () => false,
          )),
        10_000,
        'the daemon in bwrap to answer',
      );
      const got = await sendRequest(socket, { v: 1, op: 'get' }, { timeoutMs: 10_000 });
      expect(got).toMatchObject({ ok: true });
      const audit = async (): Promise<AuditStatus> => {
        const status = await sendRequest(socket, { v: 1, op: 'status' }, { timeoutMs: 10_000 });
        return (status as StatusReply).audit!;
      };
      await waitFor(
        async () => {
          const a = await audit();
          return a.written + a.dropped > 0;
        },
        10_000,
        'the audit trail to be written or dropped',
      );
      const a = await audit();
      expect({ dropped: a.dropped, lastError: a.lastError?.code ?? null }).toEqual({ dropped: 0, lastError: null });
      expect(fs.readFileSync(path.join(inputs.stateDir, 'audit.jsonl'), 'utf8')).toContain('"op":"get"');
    } finally {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
  });
});
