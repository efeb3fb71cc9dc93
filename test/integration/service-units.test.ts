// The service templates rendered with absolute paths: their content, systemd's own verifier where
// it can run, and the launchd plist parsed back with a plist parser.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parse as parsePlist } from 'plist';
import { afterAll, describe, expect, it } from 'vitest';
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
import { privateTempDir, ROOT } from '../helpers/daemon.js';
import { DAEMON_NODE_FLAGS } from '../../src/client/daemon-node-flags.js';

const layout = layoutAt(ROOT);
const tmp = privateTempDir('kb-units-');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const plainInputs: UnitInputs = {
  node: process.execPath,
  entry: path.join(ROOT, 'dist', 'src', 'cli', 'main.js'),
  path: servicePath('linux', process.execPath, '/home/ada'),
  configDir: '/home/ada/.config/keybroker',
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
    try {
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
      const bad = verify(
        renderSystemdUnits({ ...plainInputs, node: path.join(tmp, 'no-such-node') }, layout.systemdDir),
      );
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toContain('no-such-node');
    } finally {
      fs.rmSync(runtime, { recursive: true, force: true });
    }
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
    expect(plist.ProgramArguments).toEqual([macInputs.node, ...DAEMON_NODE_FLAGS, macInputs.entry, 'daemon']);
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
