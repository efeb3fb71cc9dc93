// The daemon's life: load config (writing a starter one on first run), listen, serve, reload on
// SIGHUP, stop cleanly on SIGTERM/SIGINT. startDaemon is the composition root: each part it wires
// owns its state (the config in ConfigState, each watcher behind the stop function it returns).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AdapterModule } from '../adapter.js';
import { AuditLog } from '../audit/audit-log.js';
import { auditDir } from '../audit/audit-record.js';
import { adapterFor } from '../../adapters/registry.js';
import { Broker } from '../cache/broker.js';
import { DirectoryChooser } from '../config/directories.js';
import type { ResolvedConfigPath } from '../config/load.js';
import type { ManagedPathInput } from '../config/managed.js';
import { BrokerError, describeUnknownError, resourceError } from '../errors.js';
import { createLogger, wantsPrettyLog, type Logger } from '../log.js';
import { daemonLogCandidates, logMaxBytes, rotatingLogFile, stderrLogFile } from './log-file.js';
import {
  exitCodeFor,
  renderError,
  type DaemonHardening,
  type DaemonIdentity,
  type StartedBy,
} from '../protocol/messages.js';
import type { ResolvedSocketPath } from '../client/socket-path.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { BUILD_ID, VERSION } from '../version.js';
import { ConfigState } from './config-state.js';
import { handleRequest, type DaemonInfo } from './handler.js';
import { loadHardeningAddon } from './hardening-addon.js';
import { PeerIdentifier } from './peer-identity.js';
import { hardenProcess, refuseInspectorSignal } from './process-hardening.js';
import { BrokerServer } from './server.js';
import { ensurePrivateDir } from '../private-dir.js';
import { checkSocketPathLength } from './socket-dir.js';
import { watchManagedConfig, watchSocket, type StopWatching } from './watchers.js';

export interface DaemonOptions {
  config: ResolvedConfigPath;
  socket: ResolvedSocketPath;
  logLevel?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** A listening socket inherited from systemd (LISTEN_FDS), used instead of binding. */
  listenFd?: number | undefined;
  /** How this daemon was started (reported to clients; decides how it is restarted). */
  startedBy?: StartedBy | undefined;
  log?: Logger;
  /** Adapter modules to use instead of the registry's (tests with fake backend clients). */
  adapterModules?: Partial<Record<string, AdapterModule>>;
  /** Where to look for the managed config (tests); default: the platform's path, then $KEYBROKER_MANAGED_CONFIG. */
  managedPath?: ManagedPathInput['platformPath'];
  /** How often to look at the managed config for a change, which reloads (default 30 s; 0: never). */
  managedPollMs?: number;
  /**
   * The daemon is the process's main job and the process exits once it stops: keep the signal
   * handlers until then, so a second SIGTERM during a stop never gets the default action.
   */
  ownsProcess?: boolean;
  /** What runDaemon did to the process (hardenProcess); a daemon run inside another process has none. */
  hardening?: DaemonHardening;
  /**
   * Telemetry may take its endpoint and headers from OTEL_EXPORTER_OTLP_* in `env`: set by
   * --telemetry-env, which the service units pass (see src/telemetry/telemetry-settings.ts).
   */
  telemetryEnv?: boolean;
  /** Whether Claude Code's sandbox is on for this user (telemetry reports it); the CLI reads its settings. */
  claudeSandbox?: () => Promise<boolean | undefined>;
}

export interface RunningDaemon {
  /** Resolves with the exit status once the daemon has stopped. */
  done: Promise<number>;
  stop(exitCode?: number): Promise<void>;
  reload(): Promise<boolean>;
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { log, env, broker, audit, telemetry, config, server } = await assemble(options);
  const watchers: StopWatching[] = [];
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  let stopping: Promise<void> | undefined;
  const stop = (exitCode = 0): Promise<void> => {
    stopping ??= (async () => {
      log.info({ exitCode }, 'stopping');
      for (const stopWatching of watchers.splice(0)) stopWatching();
      await server.close();
      await audit.close();
      await telemetry.close();
      await broker.close();
      // A signal that arrives between removing the handlers and the process exiting would get
      // the default action (killed by SIGTERM, socket state unknown): a process-owning daemon
      // keeps them, and a second SIGTERM just joins this stop.
      if (!options.ownsProcess) removeSignalHandlers();
      log.info('stopped');
      resolveDone(exitCode);
    })();
    return stopping;
  };

  // Installed before the socket answers: a signal that arrives as soon as a client could see
  // the daemon must get the graceful path, not the default action.
  const removeSignalHandlers = handleSignals({ hup: () => void config.reload(), term: () => void stop(0) });
  let socketDirIno: number | undefined;
  try {
    socketDirIno = await listen(server, options, () =>
      log.info(
        { socket: options.socket.path, config: config.file, profiles: broker.profileNames(), ...listening(options) },
        'listening',
      ),
    );
  } catch (err) {
    removeSignalHandlers();
    await audit.close();
    await telemetry.close();
    await broker.close();
    throw err;
  }

  watchers.push(
    ...startWatchers(options, env, server, socketDirIno, {
      unsafePath: (problem) => {
        if (stopping) return;
        log.error(
          { socket: options.socket.path },
          `${problem}: stopping, so that clients cannot be misled and a fresh daemon (started by the service manager or the next keybroker-shim) checks the path again`,
        );
        void stop(exitCodeFor('UNSAFE_PATH'));
      },
      managedConfigChanged: (file) => {
        log.info({ managedConfig: file }, 'managed config changed: reloading');
        void config.reload();
      },
    }),
  );

  return { done, stop, reload: () => config.reload() };
}

/** The daemon's parts, each owning its state: the cache, the trail, the export, the config and the server. */
interface DaemonParts {
  log: Logger;
  env: NodeJS.ProcessEnv;
  broker: Broker;
  audit: AuditLog;
  telemetry: Telemetry;
  config: ConfigState;
  server: BrokerServer;
}

/** Build the parts and load the config (a config that fails to load is served as an error). */
async function assemble(options: DaemonOptions): Promise<DaemonParts> {
  const log = options.log ?? createLogger({ level: options.logLevel });
  const env = options.env ?? process.env;
  const startedAt = Date.now();
  const broker = new Broker({
    log,
    env,
    findAdapter: adapterFor,
    ...(options.adapterModules && { adapterModules: options.adapterModules }),
  });
  const home = env.HOME || os.homedir();
  const directories = new DirectoryChooser();
  const audit = new AuditLog({ dir: auditDir(env, process.platform, home), log });
  const { peers, hardening } = peerIdentification(options.hardening);
  const telemetry = new Telemetry({
    log,
    env,
    envAllowed: options.telemetryEnv ?? false,
    readProfile: async (name) => (await broker.profile(name).get()).value,
    profiles: () => broker.status(),
    hardening: () => hardening,
    ...(options.claudeSandbox && { claudeSandbox: options.claudeSandbox }),
  });
  const config = new ConfigState({
    file: options.config.path,
    isDefault: options.config.from === 'default',
    env,
    home,
    managedPath: options.managedPath,
    broker,
    directories,
    audit,
    telemetry,
    log,
  });
  await config.start();
  await audit.open();

  const identity = identityOf(options.startedBy);
  const info = (): DaemonInfo => ({
    ...identity,
    uptimeMs: Date.now() - startedAt,
    socket: options.socket.path,
    ...config.status(),
    envNames: Object.keys(env).sort(),
    hardening,
  });
  const server = new BrokerServer({
    log,
    // The executable is for the trail only: one readlink a request saved when it is off.
    peerCredentials: peers && ((socket) => peers.credentials(socket, audit.enabled)),
    handle: (request, peer) =>
      handleRequest(
        request,
        {
          broker,
          directories,
          audit,
          telemetry,
          peers,
          version: VERSION,
          now: Date.now,
          configError: () => config.startupError,
          identity: () => identity,
          info,
        },
        peer,
      ),
  });
  return { log, env, broker, audit, telemetry, config, server };
}

function listening(options: DaemonOptions): Record<string, unknown> {
  return {
    version: VERSION,
    build: BUILD_ID,
    startedBy: options.startedBy,
    inheritedFd: options.listenFd !== undefined,
  };
}

/**
 * What the daemon watches while it runs: its socket directory and socket (not under socket
 * activation, whose directory is systemd's, nor when our path rules named no directory to check),
 * and the managed config. Returns each watcher's stop function.
 */
function startWatchers(
  options: DaemonOptions,
  env: NodeJS.ProcessEnv,
  server: BrokerServer,
  socketDirIno: number | undefined,
  on: { unsafePath: (problem: string) => void; managedConfigChanged: (file: string) => void },
): StopWatching[] {
  const managed = watchManagedConfig({
    env,
    platformPath: options.managedPath,
    intervalMs: options.managedPollMs ?? 30_000,
    onChange: on.managedConfigChanged,
  });
  if (socketDirIno === undefined) return [managed];
  const socket = watchSocket({
    dir: path.dirname(options.socket.path),
    ino: socketDirIno,
    // Under socket activation the socket file is systemd's, not ours to judge.
    ...(options.listenFd === undefined && { socketFileProblem: () => server.socketFileProblem() }),
    onProblem: on.unsafePath,
  });
  return [socket, managed];
}

/**
 * Bind the socket (or take systemd's); resolves with the socket directory's inode when the daemon
 * checked that directory (the one the socket watcher then holds it to). `announce` is logged before
 * the first request can be served (see BrokerServer.listen).
 */
async function listen(server: BrokerServer, options: DaemonOptions, announce: () => void): Promise<number | undefined> {
  const socketDir = path.dirname(options.socket.path);
  if (options.listenFd !== undefined) {
    const ino = (await fs.lstat(socketDir).catch(() => undefined))?.ino;
    await server.listenFd(options.listenFd, announce);
    return ino;
  }
  checkSocketPathLength(options.socket.path);
  await ensurePrivateDir(socketDir);
  // The directory just checked is the one watched.
  const { ino } = await fs.lstat(socketDir);
  await server.listen(options.socket.path, announce);
  return ino;
}

/** SIGHUP reloads, SIGTERM and SIGINT stop; returns the function that removes the handlers. */
function handleSignals(on: { hup: () => void; term: () => void }): StopWatching {
  process.on('SIGHUP', on.hup);
  process.on('SIGTERM', on.term);
  process.on('SIGINT', on.term);
  return () => {
    process.off('SIGHUP', on.hup);
    process.off('SIGTERM', on.term);
    process.off('SIGINT', on.term);
  };
}

/** The hardening addon's peer lookup, and what status says of the hardening (runDaemon's, when it ran). */
function peerIdentification(given: DaemonHardening | undefined): {
  peers: PeerIdentifier | undefined;
  hardening: DaemonHardening;
} {
  const addon = loadHardeningAddon();
  const peers = addon.addon ? new PeerIdentifier(addon.addon) : undefined;
  const hardening = given ?? {
    addon: peers !== undefined,
    nonDumpable: false,
    coreLimitZero: false,
    peerCredentials: peers !== undefined,
    problems: addon.problem === undefined ? [] : [addon.problem],
  };
  return { peers, hardening };
}

function identityOf(startedBy: StartedBy | undefined): DaemonIdentity {
  const identity: DaemonIdentity = { pid: process.pid, version: VERSION };
  if (BUILD_ID) identity.build = BUILD_ID;
  if (startedBy) identity.startedBy = startedBy;
  return identity;
}

/** Run the daemon as the process's main job; resolves with the exit status. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const env = options.env ?? process.env;
  const pretty = wantsPrettyLog(env);
  // A log file (autostart's daemon.log, a LaunchAgent's) is written by the daemon, and bounded.
  const logFile = pretty
    ? undefined
    : stderrLogFile(daemonLogCandidates(options.socket.path, process.platform, env.HOME || os.homedir()));
  const log =
    options.log ??
    createLogger({
      level: options.logLevel,
      pretty,
      ...(logFile && { destination: rotatingLogFile(logFile, logMaxBytes(env)) }),
    });
  refuseInspectorSignal(() => log.warn('SIGUSR1 ignored: keybroker never opens the Node inspector'));
  const addon = loadHardeningAddon();
  const hardening = hardenProcess(log, addon.addon, addon.problem);
  process.on('unhandledRejection', (reason) => {
    log.error(describeUnknownError(reason), 'unhandled promise rejection (bug): carrying on');
  });
  keepStderrJson(log);
  let daemon: RunningDaemon | undefined;
  process.on('uncaughtException', (err) => {
    // State may be inconsistent: stop cleanly (socket removed) and let the service manager restart.
    log.fatal(describeUnknownError(err), 'uncaught exception (bug): stopping');
    if (daemon) void daemon.stop(70);
    else process.exit(70);
  });
  try {
    daemon = await startDaemon({ ...options, log, ownsProcess: true, hardening });
  } catch (thrown) {
    const err = thrown instanceof BrokerError ? thrown : resourceError(thrown);
    if (err) {
      log.fatal({ err }, 'could not start');
      // For a person reading a pipe or a file of JSON lines; on a terminal the line above says it.
      if (!pretty) process.stderr.write(`keybroker: ${renderError(err)}\n`);
      return err.exitCode;
    }
    log.fatal(describeUnknownError(thrown), 'could not start');
    return 70;
  }
  return daemon.done;
}

/**
 * The daemon's stderr is its JSON log. Node's process warnings (the AWS SDK announces its Node
 * support policy this way) become log lines; libraries that write to the console (the 1Password
 * SDK prints a stack when the desktop app is missing) are logged at debug level only, first line,
 * truncated: their text is not ours to vouch for, so it stays out of the default log.
 */
function keepStderrJson(log: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    log.warn(
      { warning: warning.name, code: (warning as NodeJS.ErrnoException).code },
      warning.message.split('\n')[0]!.slice(0, 200),
    );
  });
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
    // eslint-disable-next-line no-console -- replacing the console is the point
    console[method] = (...args: unknown[]) => {
      const first =
        args.length > 0 && typeof args[0] === 'string' ? args[0].split('\n')[0]!.slice(0, 200) : '(non-text output)';
      log.debug({ via: `console.${method}` }, first);
    };
  }
}
