// `keybroker service install|uninstall|status`: a plan of steps (directories, unit files, service
// manager commands), then either printed (--dry-run) or carried out. Everything about the machine
// comes in through ServiceHost, so tests run the real plans on a temporary home with a fake
// systemctl/launchctl, and the CLI passes the real ones.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { resolveConfigPath } from '../config/load.js';
import { writeStarterConfig } from '../config/starter.js';
import { BrokerError } from '../errors.js';
import { NO_AUTOSTART_ENV } from '../client/autostart.js';
import { sendRequest } from '../client/client.js';
import type { StartedBy } from '../protocol/messages.js';
import { formatMode } from '../client/file-mode.js';
import { defaultStateDir, resolveSocketPath } from '../client/socket-path.js';
import {
  LAUNCHD_LABEL,
  LAUNCHD_PLIST,
  renderLaunchdPlist,
  renderSystemdUnits,
  servicePath,
  SYSTEMD_SERVICE,
  SYSTEMD_SOCKET,
  type UnitInputs,
} from './service-units.js';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export type CommandRunner = (argv: readonly string[]) => Promise<CommandResult>;

export interface ServiceHost {
  platform: NodeJS.Platform;
  home: string;
  uid: number;
  /** The environment of the person installing (config path, XDG dirs, PATH to find systemctl). */
  env: NodeJS.ProcessEnv;
  node: string;
  entry: string;
  systemdTemplates: string;
  launchdTemplates: string;
  run: CommandRunner;
  /** Absolute path of a command on PATH, or undefined. */
  findCommand(name: string): Promise<string | undefined>;
  /** The daemon answering on the socket (its pid, who started it), or undefined. */
  pingDaemon(socketPath: string): Promise<AnsweringDaemon | undefined>;
  /** The socket keybroker-shim and the CLI use (--socket, KEYBROKER_SOCKET, …), when not the service's. */
  clientSocket?: string;
}

export interface AnsweringDaemon {
  pid: number;
  startedBy?: StartedBy | undefined;
}

/**
 * The step that starts a daemon, for the situation: a service installed (check it), autostart on
 * (the shim starts one; the service keeps one running), or off (the service, or a foreground one).
 * One sentence, for every "nothing answers" message.
 */
export function startAdvice(situation: {
  serviceInstalled: boolean;
  autostart: boolean;
  /** A service manager answers here (false: no systemd user manager, no launchd). */
  managerAvailable: boolean;
}): string {
  if (situation.serviceInstalled) return 'the service is installed: check it with: keybroker service status';
  const service = situation.managerAvailable ? 'keybroker service install' : undefined;
  if (!situation.autostart)
    return `autostart is off (${NO_AUTOSTART_ENV}=1): ${service ? `install the service: ${service}, or run` : 'run'} keybroker daemon in a terminal of its own`;
  return `keybroker-shim starts one on its next call (autostart); start one now with: keybroker restart${service ? `, or keep one running with: ${service}` : ''}`;
}

export type ServiceStep =
  | { kind: 'mkdir'; path: string; mode: number }
  | { kind: 'write'; path: string; content: string; mode: number }
  | { kind: 'starter-config'; path: string }
  | { kind: 'remove'; path: string }
  | { kind: 'run'; argv: string[]; mayFail?: boolean };

export interface ServicePlan {
  manager: 'systemd' | 'launchd';
  /** A read-only command that proves the service manager answers, run before anything is written. */
  preflight?: string[];
  steps: ServiceStep[];
  /** Lines to print after the steps: what happens next, how to check. */
  after: string[];
}

export interface Output {
  line(text: string): void;
}

/** A read-only question the systemd user manager answers only when there is one. */
const SYSTEMD_PROBE: readonly string[] = ['systemctl', '--user', 'show', '--property', 'Version'];

/** The systemd user manager or launchd, by platform; anything else has neither. */
export function managerFor(platform: NodeJS.Platform): 'systemd' | 'launchd' {
  if (platform === 'linux') return 'systemd';
  if (platform === 'darwin') return 'launchd';
  throw new BrokerError(
    'UNAVAILABLE',
    `keybroker service supports systemd (Linux) and launchd (macOS), not ${platform}; let keybroker-shim start the daemon on demand (autostart), or run keybroker daemon yourself`,
  );
}

export interface ServicePaths {
  unitDir: string;
  files: string[];
  logDir: string;
  socket: string;
}

export function servicePaths(host: Pick<ServiceHost, 'platform' | 'home' | 'env' | 'uid'>): ServicePaths {
  const manager = managerFor(host.platform);
  if (manager === 'systemd') {
    // The user manager reads ~/.config/systemd/user whatever XDG_CONFIG_HOME says in a shell.
    const unitDir = path.join(host.home, '.config', 'systemd', 'user');
    // The socket unit listens on %t: the manager's XDG_RUNTIME_DIR, which logind makes /run/user/<uid>.
    const runtimeDir =
      host.env.XDG_RUNTIME_DIR && path.isAbsolute(host.env.XDG_RUNTIME_DIR)
        ? host.env.XDG_RUNTIME_DIR
        : `/run/user/${host.uid}`;
    const socket = resolveSocketPath({
      env: { XDG_RUNTIME_DIR: runtimeDir },
      platform: host.platform,
      home: host.home,
    }).path;
    return {
      unitDir,
      files: [path.join(unitDir, SYSTEMD_SERVICE), path.join(unitDir, SYSTEMD_SOCKET)],
      logDir: '',
      socket,
    };
  }
  const unitDir = path.join(host.home, 'Library', 'LaunchAgents');
  return {
    unitDir,
    files: [path.join(unitDir, LAUNCHD_PLIST)],
    logDir: path.join(host.home, 'Library', 'Logs', 'keybroker'),
    socket: resolveSocketPath({ env: {}, platform: 'darwin', home: host.home }).path,
  };
}

/**
 * The inputs the templates need. The config path is baked in only when it is not where the
 * service would look on its own (~/.config/keybroker/config.yaml: a service does not see the
 * KEYBROKER_CONFIG or XDG_CONFIG_HOME of the shell that installed it).
 */
export function unitInputs(host: ServiceHost): UnitInputs {
  const wanted = resolveConfigPath({ env: host.env, home: host.home }).path;
  const serviceDefault = resolveConfigPath({ env: {}, home: host.home }).path;
  return {
    node: host.node,
    entry: host.entry,
    path: servicePath(host.platform, host.node, host.home),
    config: wanted === serviceDefault ? undefined : wanted,
    configDir: path.dirname(wanted),
    // A service does not see the installing shell's XDG_STATE_HOME either.
    stateDir: defaultStateDir(host.platform, host.home, {}),
    logDir: path.join(host.home, 'Library', 'Logs', 'keybroker'),
  };
}

export function planInstall(host: ServiceHost): ServicePlan {
  const manager = managerFor(host.platform);
  const paths = servicePaths(host);
  const inputs = unitInputs(host);
  const config = resolveConfigPath({ env: host.env, home: host.home });
  const steps: ServiceStep[] = [{ kind: 'mkdir', path: paths.unitDir, mode: 0o755 }];
  // Under ProtectSystem=strict the daemon cannot create its config and state directories itself.
  steps.push({ kind: 'mkdir', path: inputs.configDir, mode: 0o700 });
  if (manager === 'systemd') steps.push({ kind: 'mkdir', path: inputs.stateDir, mode: 0o700 });
  if (config.from === 'default') steps.push({ kind: 'starter-config', path: config.path });
  if (manager === 'systemd') {
    const units = renderSystemdUnits(inputs, host.systemdTemplates);
    steps.push(
      { kind: 'write', path: path.join(paths.unitDir, SYSTEMD_SERVICE), content: units.service, mode: 0o644 },
      { kind: 'write', path: path.join(paths.unitDir, SYSTEMD_SOCKET), content: units.socket, mode: 0o644 },
      { kind: 'run', argv: ['systemctl', '--user', 'daemon-reload'] },
      { kind: 'run', argv: ['systemctl', '--user', 'enable', '--now', SYSTEMD_SOCKET] },
      // A daemon already running from an older unit picks up the new one; a stopped one stays stopped.
      { kind: 'run', argv: ['systemctl', '--user', 'try-restart', SYSTEMD_SERVICE] },
    );
    return {
      manager,
      preflight: [...SYSTEMD_PROBE],
      steps,
      after: [
        `the daemon starts on the first request to ${paths.socket}`,
        'check it: keybroker service status (logs: journalctl --user -u keybroker)',
      ],
    };
  }
  const plist = path.join(paths.unitDir, LAUNCHD_PLIST);
  const domain = `gui/${host.uid}`;
  steps.push(
    { kind: 'mkdir', path: paths.logDir, mode: 0o700 },
    { kind: 'write', path: plist, content: renderLaunchdPlist(inputs, host.launchdTemplates), mode: 0o644 },
    // bootstrap refuses a label that is already loaded, and a disabled one: unload first, enable.
    { kind: 'run', argv: ['launchctl', 'bootout', `${domain}/${LAUNCHD_LABEL}`], mayFail: true },
    { kind: 'run', argv: ['launchctl', 'enable', `${domain}/${LAUNCHD_LABEL}`] },
    { kind: 'run', argv: ['launchctl', 'bootstrap', domain, plist] },
  );
  return {
    manager,
    preflight: ['launchctl', 'print', domain],
    steps,
    after: [
      `the daemon runs now and at every login, listening on ${paths.socket}`,
      `check it: keybroker service status (log: ${path.join(paths.logDir, 'daemon.log')})`,
    ],
  };
}

export function planUninstall(host: ServiceHost): ServicePlan {
  const manager = managerFor(host.platform);
  const paths = servicePaths(host);
  if (manager === 'systemd') {
    return {
      manager,
      steps: [
        {
          kind: 'run',
          argv: ['systemctl', '--user', 'disable', '--now', SYSTEMD_SOCKET, SYSTEMD_SERVICE],
          mayFail: true,
        },
        ...paths.files.map((f): ServiceStep => ({ kind: 'remove', path: f })),
        { kind: 'run', argv: ['systemctl', '--user', 'daemon-reload'], mayFail: true },
      ],
      after: [
        'removed; keybroker-shim starts a daemon on demand again (unless KEYBROKER_NO_AUTOSTART=1); your config is kept',
      ],
    };
  }
  return {
    manager,
    steps: [
      { kind: 'run', argv: ['launchctl', 'bootout', `gui/${host.uid}/${LAUNCHD_LABEL}`], mayFail: true },
      ...paths.files.map((f): ServiceStep => ({ kind: 'remove', path: f })),
    ],
    after: [
      `removed; keybroker-shim starts a daemon on demand again (unless KEYBROKER_NO_AUTOSTART=1); your config and ${paths.logDir} are kept`,
    ],
  };
}

function managerCommand(manager: 'systemd' | 'launchd'): string {
  return manager === 'systemd' ? 'systemctl' : 'launchctl';
}

function absentError(manager: 'systemd' | 'launchd'): BrokerError {
  return manager === 'systemd'
    ? new BrokerError(
        'UNAVAILABLE',
        'systemctl is not on PATH: keybroker service needs a systemd user manager; without one, let keybroker-shim start the daemon on demand (autostart), or run keybroker daemon yourself',
      )
    : new BrokerError(
        'UNAVAILABLE',
        'launchctl is not on PATH: keybroker service needs macOS launchd; let keybroker-shim start the daemon on demand (autostart), or run keybroker daemon yourself',
      );
}

function describeStep(step: ServiceStep): string {
  switch (step.kind) {
    case 'mkdir':
      return `create directory ${step.path} (mode ${formatMode(step.mode)}) if missing`;
    case 'write':
      return `write ${step.path} (mode ${formatMode(step.mode)})`;
    case 'starter-config':
      return `write a starter config to ${step.path} if there is none`;
    case 'remove':
      return `remove ${step.path}`;
    case 'run':
      return `run: ${step.argv.join(' ')}${step.mayFail ? '   (a failure here is fine)' : ''}`;
  }
}

/** Print the plan (dry run) or carry it out, stopping at the first step that fails. */
export async function applyPlan(
  plan: ServicePlan,
  host: ServiceHost,
  options: { dryRun: boolean; out: Output },
): Promise<void> {
  const { out } = options;
  const command = managerCommand(plan.manager);
  const found = await host.findCommand(command);
  if (options.dryRun) {
    out.line(
      `dry run: nothing is written or run (service manager: ${plan.manager}${found ? '' : `; note: ${command} is not on PATH, so a real run would fail`})`,
    );
    // The preflight only reads, so a dry run can say now what would stop the real install.
    if (found && plan.preflight) {
      const result = await host.run(plan.preflight);
      if (result.code !== 0)
        out.line(
          `warning: the real install would fail: ${preflightFailure(plan.manager, plan.preflight, result).message}`,
        );
    }
    for (const step of plan.steps) {
      out.line(`would ${describeStep(step)}`);
      if (step.kind === 'write') out.line(indent(step.content));
    }
    return;
  }
  if (!found && plan.steps.some((s) => s.kind === 'run' && !s.mayFail)) throw absentError(plan.manager);
  if (found && plan.preflight) {
    const result = await host.run(plan.preflight);
    if (result.code !== 0) throw preflightFailure(plan.manager, plan.preflight, result);
  }
  for (const step of plan.steps) {
    switch (step.kind) {
      case 'mkdir':
        await fs.mkdir(step.path, { recursive: true, mode: step.mode });
        break;
      case 'starter-config':
        switch ((await writeStarterConfig(step.path))?.kind) {
          case 'keyring':
            out.line(
              `wrote a starter config to ${step.path}: its default profile reads the key from your keychain — store it there with: keybroker key set default`,
            );
            break;
          case 'file':
            out.line(`wrote a starter config to ${step.path}: edit it to add your profiles`);
            break;
        }
        continue;
      case 'write':
        await writeFileAtomically(step.path, step.content, step.mode);
        break;
      case 'remove':
        try {
          await fs.rm(step.path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
            out.line(`(${step.path} was not there)`);
            continue;
          }
          throw err;
        }
        break;
      case 'run': {
        if (!found) continue;
        const result = await host.run(step.argv);
        if (result.code !== 0 && !step.mayFail) throw runFailure(plan.manager, step.argv, result);
        break;
      }
    }
    out.line(`done: ${describeStep(step)}`);
  }
  for (const line of plan.after) out.line(line);
}

function preflightFailure(manager: 'systemd' | 'launchd', argv: readonly string[], result: CommandResult): BrokerError {
  if (manager === 'launchd') {
    const detail = firstLine(result.stderr) || firstLine(result.stdout) || `exit ${result.code}`;
    return new BrokerError(
      'UNAVAILABLE',
      `${argv.join(' ')} failed (${detail}): a LaunchAgent needs your desktop login session (not only ssh); log in at the Mac, or let keybroker-shim start the daemon on demand (autostart)`,
    );
  }
  return runFailure(manager, argv, result);
}

function runFailure(manager: 'systemd' | 'launchd', argv: readonly string[], result: CommandResult): BrokerError {
  const detail = firstLine(result.stderr) || firstLine(result.stdout) || `exit ${result.code}`;
  if (
    manager === 'systemd' &&
    /Failed to connect to bus|DBUS_SESSION_BUS_ADDRESS|XDG_RUNTIME_DIR|No medium found/i.test(result.stderr)
  ) {
    return new BrokerError(
      'UNAVAILABLE',
      `systemctl --user cannot reach your user manager (${detail}): log in through a session that runs systemd --user (on a server: loginctl enable-linger $USER), or let keybroker-shim start the daemon on demand (autostart)`,
    );
  }
  return new BrokerError('UNAVAILABLE', `${argv.join(' ')} failed: ${detail}`, { status: result.code ?? undefined });
}

function firstLine(text: string): string {
  const line = text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '';
  return line.trim().slice(0, 300);
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

/** Write via a temporary file and rename, so a unit file is never seen half written. */
export async function writeFileAtomically(file: string, content: string, mode: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    await fs.writeFile(tmp, content, { mode, flag: 'wx' });
    await fs.chmod(tmp, mode);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

export interface InstallReport {
  /** A daemon that was answering before the install and is not the service's. */
  strayDaemonPid?: number;
}

export async function installService(
  host: ServiceHost,
  options: { dryRun: boolean; out: Output },
): Promise<InstallReport> {
  const plan = planInstall(host);
  const paths = servicePaths(host);
  const before = options.dryRun ? undefined : (await host.pingDaemon(paths.socket))?.pid;
  // Asked before installing: a reinstall restarts the service, and its old pid is not a stray.
  const servicePid = before === undefined ? undefined : await mainPid(plan.manager, host);
  await applyPlan(plan, host, options);
  const report: InstallReport = {};
  if (before !== undefined) {
    if (servicePid !== before) {
      report.strayDaemonPid = before;
      options.out.line(
        `note: a keybroker daemon (pid ${before}) started outside the service was answering on ${paths.socket}; stop it so only the service serves: keybroker stop (or kill ${before})`,
      );
    }
  }
  return report;
}

export async function uninstallService(host: ServiceHost, options: { dryRun: boolean; out: Output }): Promise<void> {
  await applyPlan(planUninstall(host), host, options);
}

async function mainPid(manager: 'systemd' | 'launchd', host: ServiceHost): Promise<number | undefined> {
  if (manager === 'systemd') {
    const r = await host.run(['systemctl', '--user', 'show', '--property', 'MainPID', '--value', SYSTEMD_SERVICE]);
    const pid = Number(r.stdout.trim());
    return r.code === 0 && pid > 0 ? pid : undefined;
  }
  const r = await host.run(['launchctl', 'print', `gui/${host.uid}/${LAUNCHD_LABEL}`]);
  const m = /^\s*pid = (\d+)/m.exec(r.stdout);
  return r.code === 0 && m ? Number(m[1]) : undefined;
}

export interface ServiceStatus {
  manager: 'systemd' | 'launchd';
  installed: boolean;
  /** Socket unit active (systemd) or agent loaded (launchd). */
  active: boolean;
  daemonPid: number | undefined;
  lines: string[];
}

export async function serviceStatus(host: ServiceHost): Promise<ServiceStatus> {
  const manager = managerFor(host.platform);
  const paths = servicePaths(host);
  const present = await Promise.all(
    paths.files.map((f) =>
      fs.access(f).then(
        () => true,
        () => false,
      ),
    ),
  );
  const installed = present.every(Boolean);
  const lines = [`manager   ${manager === 'systemd' ? 'systemd (user)' : `launchd (gui/${host.uid})`}`];
  lines.push(`files     ${paths.files.map((f, i) => `${f}${present[i] ? '' : ' (missing)'}`).join(', ')}`);
  let active = false;
  const command = managerCommand(manager);
  const found = await host.findCommand(command);
  // Without a user manager every query fails the same way ("Failed to connect to bus"): ask once.
  const probe = found && manager === 'systemd' ? await host.run(SYSTEMD_PROBE) : undefined;
  if (!found) {
    lines.push(`${manager === 'systemd' ? 'units' : 'agent'}     unknown: ${command} is not on PATH`);
  } else if (probe && probe.code !== 0) {
    lines.push(`units     unknown: ${runFailure(manager, SYSTEMD_PROBE, probe).message}`);
  } else if (manager === 'systemd') {
    const enabled = await host.run(['systemctl', '--user', 'is-enabled', SYSTEMD_SOCKET]);
    const socketState = await host.run(['systemctl', '--user', 'is-active', SYSTEMD_SOCKET]);
    const serviceState = await host.run(['systemctl', '--user', 'is-active', SYSTEMD_SERVICE]);
    const word = (r: CommandResult): string => firstLine(r.stdout) || firstLine(r.stderr) || 'unknown';
    active = socketState.code === 0;
    lines.push(`socket    ${word(enabled)}, ${word(socketState)} — ${paths.socket}`);
    lines.push(
      `service   ${word(serviceState)}${serviceState.code !== 0 && active ? ' (it starts on the first request)' : ''}`,
    );
  } else {
    const r = await host.run(['launchctl', 'print', `gui/${host.uid}/${LAUNCHD_LABEL}`]);
    active = r.code === 0;
    const state = /^\s*state = (.+)$/m.exec(r.stdout)?.[1]?.trim();
    lines.push(`agent     ${active ? `loaded${state ? `, ${state}` : ''}` : 'not loaded'} — ${LAUNCHD_LABEL}`);
  }
  const managerAvailable = found !== undefined && (probe === undefined || probe.code === 0);
  const daemons = await answeringDaemons(host, paths.socket);
  lines.push(...daemons.lines);
  const serving = daemons.service ?? daemons.client;
  const autostart = host.env[NO_AUTOSTART_ENV] !== '1';
  if (!installed && managerAvailable) lines.push('not installed: run keybroker service install');
  else if (!installed)
    lines.push(
      `not installed, and there is no ${manager === 'systemd' ? 'systemd user manager' : 'launchd'} here to run it; ${
        serving
          ? `the daemon above serves instead (started by ${serving.startedBy ?? 'hand'}; keybroker stop stops it)`
          : startAdvice({ serviceInstalled: false, autostart, managerAvailable })
      }`,
    );
  else if (daemons.client && daemons.client.startedBy !== manager)
    lines.push(
      `a daemon started outside the service (pid ${daemons.client.pid}) answers keybroker-shim: stop it so the service serves: keybroker stop`,
    );
  return { manager, installed, active, daemonPid: daemons.service?.pid, lines };
}

/**
 * startAdvice's situation for this machine, without asking the service manager (an error path
 * must not wait on systemctl): the unit files, the user manager's private socket, the env.
 */
export async function startSituation(
  host: Pick<ServiceHost, 'platform' | 'home' | 'env' | 'uid'>,
): Promise<Parameters<typeof startAdvice>[0]> {
  const autostart = host.env[NO_AUTOSTART_ENV] !== '1';
  if (host.platform !== 'linux' && host.platform !== 'darwin')
    return { serviceInstalled: false, autostart, managerAvailable: false };
  const exists = (f: string): Promise<boolean> =>
    fs.access(f).then(
      () => true,
      () => false,
    );
  const installed = (await Promise.all(servicePaths(host).files.map(exists))).every(Boolean);
  const runtime =
    host.env.XDG_RUNTIME_DIR && path.isAbsolute(host.env.XDG_RUNTIME_DIR)
      ? host.env.XDG_RUNTIME_DIR
      : `/run/user/${host.uid}`;
  const managerAvailable = host.platform === 'darwin' || (await exists(path.join(runtime, 'systemd', 'private')));
  return { serviceInstalled: installed, autostart, managerAvailable };
}

/**
 * The daemons answering on the service's socket and, when keybroker-shim uses another one here
 * (no XDG_RUNTIME_DIR, KEYBROKER_SOCKET, --socket), on that one: an autostarted daemon there
 * serves Claude Code whatever the service's socket says.
 */
async function answeringDaemons(
  host: ServiceHost,
  serviceSocket: string,
): Promise<{ service?: AnsweringDaemon; client?: AnsweringDaemon; lines: string[] }> {
  const describe = (d: AnsweringDaemon, socket: string): string =>
    `answering on ${socket} (pid ${d.pid}${d.startedBy ? `, ${d.startedBy}` : ''})`;
  const service = await host.pingDaemon(serviceSocket);
  const clientSocket =
    host.clientSocket ?? resolveSocketPath({ env: host.env, platform: host.platform, home: host.home }).path;
  if (clientSocket === serviceSocket)
    return {
      ...(service && { service, client: service }),
      lines: [`daemon    ${service ? describe(service, serviceSocket) : `not answering on ${serviceSocket}`}`],
    };
  const client = await host.pingDaemon(clientSocket);
  return {
    ...(service && { service }),
    ...(client && { client }),
    lines: [
      `daemon    ${service ? describe(service, serviceSocket) : `not answering on ${serviceSocket} (the service's socket)`}`,
      `          ${client ? describe(client, clientSocket) : `not answering on ${clientSocket}`} (the socket keybroker-shim uses here)`,
    ],
  };
}

/** The real machine: spawn with a time limit, PATH lookup, a ping over the protocol. */
export function realServiceHost(base: Omit<ServiceHost, 'run' | 'findCommand' | 'pingDaemon'>): ServiceHost {
  return {
    ...base,
    run: (argv) => runCommand(argv, base.env),
    findCommand: (name) => findOnPath(name, base.env.PATH),
    pingDaemon: async (socketPath) => {
      const reply = await sendRequest(socketPath, { v: 1, op: 'ping' }, { timeoutMs: 2_000 });
      return reply.ok && 'pong' in reply ? { pid: reply.pid, startedBy: reply.startedBy } : undefined;
    },
  };
}

const MAX_OUTPUT = 64 * 1024;

export function runCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 30_000,
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    timer.unref();
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${cmd}: ${err.code ?? err.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function findOnPath(name: string, pathVar: string | undefined): Promise<string | undefined> {
  for (const dir of (pathVar ?? '').split(path.delimiter)) {
    if (!dir || !path.isAbsolute(dir)) continue;
    const candidate = path.join(dir, name);
    try {
      const st = await fs.stat(candidate);
      if (st.isFile()) {
        await fs.access(candidate, fs.constants.X_OK);
        return candidate;
      }
    } catch {
      // not here
    }
  }
  return undefined;
}
