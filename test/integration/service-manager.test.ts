// `keybroker service install|uninstall|status` on a temporary home, with fake systemctl/launchctl
// programs on PATH (test/fakes/fake-service-managers.ts): real files, real process spawning, real
// PATH lookup; only the service managers themselves are stand-ins.
import fs from 'node:fs';
import path from 'node:path';
import { parse as parsePlist } from 'plist';
import { beforeEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { layoutAt } from '../../src/integration/install-layout.js';
import {
  installService,
  realServiceHost,
  serviceStatus,
  startAdvice,
  uninstallService,
  type ServiceHost,
} from '../../src/integration/service-manager.js';
import { renderSystemdUnits, servicePath } from '../../src/integration/service-units.js';
import { installFakeServiceManagers, type FakeServiceManagers } from '../fakes/fake-service-managers.js';
import {
  CLI,
  daemonPid,
  privateTempDir,
  ROOT,
  run,
  SHIM,
  startDaemon,
  workspace,
  type DaemonHandle,
  shellQuote,
} from '../helpers/daemon.js';
import { DAEMON_NODE_FLAGS } from '../../src/client/daemon-node-flags.js';

const layout = layoutAt(ROOT);
const UID = 501;

let home: string;
let fakes: FakeServiceManagers;

beforeEach(() => {
  home = privateTempDir('kb-svc-');
  fakes = installFakeServiceManagers(home, UID);
});

function host(platform: NodeJS.Platform, env: NodeJS.ProcessEnv = {}): ServiceHost {
  return realServiceHost({
    platform,
    home,
    uid: UID,
    env: { ...fakes.env, HOME: home, XDG_RUNTIME_DIR: path.join(home, 'run'), ...env },
    node: process.execPath,
    entry: layout.entry,
    systemdTemplates: layout.systemdDir,
    launchdTemplates: layout.launchdDir,
  });
}

function capture(): { line(text: string): void; text(): string } {
  const lines: string[] = [];
  return { line: (t) => lines.push(t), text: () => lines.join('\n') };
}

const modeOf = (p: string): number => fs.statSync(p).mode & 0o777;

describe('service install on Linux (systemd user units)', () => {
  it('writes both units, enables the socket, and starts nothing else', async () => {
    const out = capture();
    await installService(host('linux'), { dryRun: false, out });
    const unitDir = path.join(home, '.config', 'systemd', 'user');
    const service = fs.readFileSync(path.join(unitDir, 'keybroker.service'), 'utf8');
    const socket = fs.readFileSync(path.join(unitDir, 'keybroker.socket'), 'utf8');
    const expected = renderSystemdUnits(
      {
        node: process.execPath,
        entry: layout.entry,
        path: servicePath('linux', process.execPath, home),
        configDir: path.join(home, '.config', 'keybroker'),
        stateDir: path.join(home, '.local', 'state', 'keybroker'),
        logDir: '/unused',
      },
      layout.systemdDir,
    );
    expect(service).toBe(expected.service);
    expect(socket).toBe(expected.socket);
    expect(modeOf(path.join(unitDir, 'keybroker.service'))).toBe(0o644);
    expect(fakes.calls()).toEqual([
      'systemctl --user show --property Version',
      'systemctl --user daemon-reload',
      'systemctl --user enable --now keybroker.socket',
      'systemctl --user try-restart keybroker.service',
    ]);
    // ProtectSystem=strict: the config directory must exist before the daemon runs.
    expect(modeOf(path.join(home, '.config', 'keybroker'))).toBe(0o700);
    expect(modeOf(path.join(home, '.config', 'keybroker', 'config.yaml'))).toBe(0o600);
    expect(out.text()).toContain(
      `the daemon starts on the first request to ${path.join(home, 'run', 'keybroker', 'keybroker.sock')}`,
    );
    expect(fs.readdirSync(unitDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('bakes in a config that is not where the service would look by default', async () => {
    const config = path.join(home, 'elsewhere', 'kb.yaml');
    await installService(host('linux', { KEYBROKER_CONFIG: config }), { dryRun: false, out: capture() });
    const service = fs.readFileSync(path.join(home, '.config', 'systemd', 'user', 'keybroker.service'), 'utf8');
    expect(service).toContain(`Environment="KEYBROKER_CONFIG=${config}"`);
    expect(service).toMatch(new RegExp(`^ReadWritePaths=${path.join(home, 'elsewhere')} `, 'm'));
    expect(fs.statSync(path.join(home, 'elsewhere')).isDirectory()).toBe(true);
    // Not the default location: the daemon reports a missing file rather than writing a starter.
    expect(fs.existsSync(config)).toBe(false);
  });

  it('prints everything and changes nothing with --dry-run', async () => {
    const out = capture();
    await installService(host('linux'), { dryRun: true, out });
    expect(fs.existsSync(path.join(home, '.config'))).toBe(false);
    // Only the read-only preflight runs, so the dry run can warn about what would fail.
    expect(fakes.calls()).toEqual(['systemctl --user show --property Version']);
    const text = out.text();
    expect(text).toContain(
      `would write ${path.join(home, '.config', 'systemd', 'user', 'keybroker.service')} (mode 0644)`,
    );
    expect(text).toContain(
      `ExecStart=${[process.execPath, ...DAEMON_NODE_FLAGS, layout.entry, 'daemon', '--telemetry-env'].join(' ')}`,
    );
    expect(text).toContain('ListenStream=%t/keybroker/keybroker.sock');
    expect(text).toContain('would run: systemctl --user enable --now keybroker.socket');
  });

  it('says clearly when systemctl is missing, and writes nothing', async () => {
    const empty = path.join(home, 'empty-bin');
    fs.mkdirSync(empty);
    const err = await installService(host('linux', { PATH: empty }), { dryRun: false, out: capture() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('UNAVAILABLE');
    expect((err as BrokerError).message).toMatch(
      /^systemctl is not on PATH: keybroker service needs a systemd user manager/,
    );
    expect(fs.existsSync(path.join(home, '.config', 'systemd'))).toBe(false);
    // A dry run still works, and says a real one would fail.
    const out = capture();
    await installService(host('linux', { PATH: empty }), { dryRun: true, out });
    expect(out.text()).toContain('systemctl is not on PATH, so a real run would fail');
  });

  it('says clearly when there is no user manager to talk to, and writes nothing', async () => {
    const err = await installService(host('linux', { FAKE_SYSTEMCTL_MODE: 'nobus' }), {
      dryRun: false,
      out: capture(),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as BrokerError).code).toBe('UNAVAILABLE');
    expect((err as BrokerError).message).toContain(
      'systemctl --user cannot reach your user manager (Failed to connect to bus: No medium found)',
    );
    expect((err as BrokerError).message).toContain('loginctl enable-linger');
    expect(fs.existsSync(path.join(home, '.config', 'systemd'))).toBe(false);
  });

  it('service status without a user manager says so once, instead of a systemctl error per line', async () => {
    const status = await serviceStatus(host('linux', { FAKE_SYSTEMCTL_MODE: 'nobus' }));
    expect(status.active).toBe(false);
    const units = status.lines.filter((l) => l.startsWith('units '));
    expect(units).toHaveLength(1);
    expect(units[0]).toContain('loginctl enable-linger');
    expect(status.lines.filter((l) => l.includes('Failed to connect to bus'))).toEqual(units);
    expect(fakes.calls()).toEqual(['systemctl --user show --property Version']);
  });

  it('service status without a user manager reports the autostarted daemon that serves, and that no service is installed', async () => {
    const { env } = workspace({
      prefix: 'kb-svc-auto-',
      autostart: true,
      config: 'profiles:\n  default:\n    source: env:KB_SVC_KEY\n',
      env: { KB_SVC_KEY: 'sk-svc-1' },
    });
    expect((await run('/bin/sh', ['-c', shellQuote(SHIM)], { env })).code).toBe(0);
    const pid = await daemonPid(env);
    const h = host('linux', { FAKE_SYSTEMCTL_MODE: 'nobus' });
    h.clientSocket = env.KEYBROKER_SOCKET!;
    const status = await serviceStatus(h);
    expect(status).toMatchObject({ installed: false, active: false });
    expect(status.lines).toContain(
      `          answering on ${env.KEYBROKER_SOCKET} (pid ${pid}, autostart) (the socket keybroker-shim uses here)`,
    );
    // Not "run keybroker service install", which cannot work here: the serving daemon, and how to stop it.
    expect(status.lines.at(-1)).toContain('keybroker stop');
    expect(status.lines.at(-1)).toContain('no systemd user manager');
  });

  it('says which step starts a daemon: service status, keybroker restart, or a foreground daemon', () => {
    expect(startAdvice({ serviceInstalled: true, autostart: true, managerAvailable: true })).toContain(
      'keybroker service status',
    );
    expect(startAdvice({ serviceInstalled: false, autostart: true, managerAvailable: true })).toContain(
      'keybroker restart, or keep one running with: keybroker service install',
    );
    expect(startAdvice({ serviceInstalled: false, autostart: true, managerAvailable: false })).not.toContain(
      'service install',
    );
    expect(startAdvice({ serviceInstalled: false, autostart: false, managerAvailable: true })).toContain(
      'keybroker service install, or run keybroker daemon',
    );
    expect(startAdvice({ serviceInstalled: false, autostart: false, managerAvailable: false })).not.toContain(
      'service install',
    );
  });

  it('a dry run warns when the real install cannot work (no user manager), and runs nothing that changes state', async () => {
    const out = capture();
    await installService(host('linux', { FAKE_SYSTEMCTL_MODE: 'nobus' }), { dryRun: true, out });
    const warnings = out
      .text()
      .split('\n')
      .filter((l) => l.startsWith('warning: '));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('loginctl enable-linger');
    expect(fakes.calls()).toEqual(['systemctl --user show --property Version']);
    expect(fs.existsSync(path.join(home, '.config', 'systemd'))).toBe(false);
    // With a user manager, no warning.
    const fine = capture();
    await installService(host('linux'), { dryRun: true, out: fine });
    expect(
      fine
        .text()
        .split('\n')
        .filter((l) => l.startsWith('warning: ')),
    ).toEqual([]);
  });

  it('names a daemon started outside the service that was answering on the socket', async () => {
    const daemon: DaemonHandle = await startDaemon({
      config: 'profiles:\n  a:\n    source: env:KB_SVC_A\n',
      prefix: 'kb-svcd-',
      env: { KEYBROKER_SOCKET: path.join(home, 'run', 'keybroker', 'keybroker.sock') },
    });
    const out = capture();
    const report = await installService(host('linux', { FAKE_SYSTEMCTL_MAINPID: '999999' }), { dryRun: false, out });
    expect(report.strayDaemonPid).toBe(daemon.proc.pid);
    expect(out.text()).toContain(`kill ${daemon.proc.pid}`);
    // A reinstall over the service's own daemon (same MainPID before the restart) names nothing.
    const again = capture();
    const reinstall = await installService(host('linux', { FAKE_SYSTEMCTL_MAINPID: String(daemon.proc.pid) }), {
      dryRun: false,
      out: again,
    });
    expect(reinstall.strayDaemonPid).toBeUndefined();
    expect(again.text()).not.toContain('kill');
  });

  it('uninstalls: disables, removes both units, reloads', async () => {
    await installService(host('linux'), { dryRun: false, out: capture() });
    const before = fakes.calls().length;
    await uninstallService(host('linux'), { dryRun: false, out: capture() });
    expect(fakes.calls().slice(before)).toEqual([
      'systemctl --user disable --now keybroker.socket keybroker.service',
      'systemctl --user daemon-reload',
    ]);
    expect(fs.readdirSync(path.join(home, '.config', 'systemd', 'user'))).toEqual([]);
    expect(fs.existsSync(path.join(home, '.config', 'keybroker', 'config.yaml'))).toBe(true);
  });

  it('reports status from systemctl and from the daemon itself', async () => {
    const missing = await serviceStatus(host('linux'));
    expect(missing.installed).toBe(false);
    expect(missing.lines.at(-1)).toBe('not installed: run keybroker service install');
    await installService(host('linux'), { dryRun: false, out: capture() });
    const status = await serviceStatus(host('linux'));
    expect(status).toMatchObject({ manager: 'systemd', installed: true, active: true, daemonPid: undefined });
    expect(status.lines).toContain(
      `socket    enabled, active — ${path.join(home, 'run', 'keybroker', 'keybroker.sock')}`,
    );
    expect(status.lines).toContain('service   inactive (it starts on the first request)');
  });
});

describe('service install on macOS (LaunchAgent)', () => {
  const plistPath = (): string => path.join(home, 'Library', 'LaunchAgents', 'dev.keybroker.agent.plist');

  it('writes the agent, creates its log directory, and bootstraps it into gui/<uid>', async () => {
    await installService(host('darwin'), { dryRun: false, out: capture() });
    const plist = parsePlist(fs.readFileSync(plistPath(), 'utf8')) as Record<string, unknown>;
    expect(plist.ProgramArguments).toEqual([
      process.execPath,
      ...DAEMON_NODE_FLAGS,
      layout.entry,
      'daemon',
      '--telemetry-env',
    ]);
    expect(plist.StandardErrorPath).toBe(path.join(home, 'Library', 'Logs', 'keybroker', 'daemon.log'));
    expect(modeOf(path.join(home, 'Library', 'Logs', 'keybroker'))).toBe(0o700);
    expect(fakes.calls()).toEqual([
      `launchctl print gui/${UID}`,
      `launchctl bootout gui/${UID}/dev.keybroker.agent`,
      `launchctl enable gui/${UID}/dev.keybroker.agent`,
      `launchctl bootstrap gui/${UID} ${plistPath()}`,
    ]);
    const status = await serviceStatus(host('darwin'));
    expect(status).toMatchObject({ manager: 'launchd', installed: true, active: true });
    expect(status.lines).toContain('agent     loaded, running — dev.keybroker.agent');
  });

  it('reinstalls over a loaded agent (bootout first), and uninstalls', async () => {
    await installService(host('darwin'), { dryRun: false, out: capture() });
    await installService(host('darwin'), { dryRun: false, out: capture() });
    expect(fakes.calls().filter((c) => c.includes('bootstrap'))).toHaveLength(2);
    await uninstallService(host('darwin'), { dryRun: false, out: capture() });
    expect(fs.existsSync(plistPath())).toBe(false);
    expect((await serviceStatus(host('darwin'))).active).toBe(false);
  });

  it('says clearly when launchctl is missing', async () => {
    const empty = path.join(home, 'empty-bin');
    fs.mkdirSync(empty);
    await expect(
      installService(host('darwin', { PATH: empty }), { dryRun: false, out: capture() }),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining('launchctl') });
  });
});

it('refuses platforms with neither systemd nor launchd', async () => {
  await expect(installService(host('win32'), { dryRun: true, out: capture() })).rejects.toMatchObject({
    code: 'UNAVAILABLE',
    message: expect.stringContaining('win32'),
  });
});

it('the CLI prints the dry run and exits 0', async () => {
  const result = await run(process.execPath, [CLI, 'service', 'install', '--dry-run'], {
    env: { ...fakes.env, HOME: home, XDG_RUNTIME_DIR: path.join(home, 'run') },
  });
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  expect(result.stdout).toContain('would run: systemctl --user daemon-reload');
  expect(fs.existsSync(path.join(home, '.config'))).toBe(false);
});
