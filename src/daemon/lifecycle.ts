// The daemon's life: load config (writing a starter one on first run), listen, serve, reload on
// SIGHUP, stop cleanly on SIGTERM/SIGINT.
import fs from 'node:fs/promises';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AdapterModule } from '../adapter.js';
import { AuditLog } from '../audit/audit-log.js';
import { auditDir } from '../audit/audit-record.js';
import { adapterFor } from '../../adapters/registry.js';
import { Broker } from '../cache/broker.js';
import { DirectoryChooser } from '../config/directories.js';
import { loadConfig, type LoadedConfig, type ResolvedConfigPath } from '../config/load.js';
import {
  MANAGED_CONFIG_ENV,
  platformManagedConfigPath,
  resolveManagedConfigPath,
  type ManagedPathInput,
} from '../config/managed.js';
import { writeStarterConfig, type StarterSource } from '../config/starter.js';
import { asBrokerError, BrokerError, describeUnknownError, resourceError } from '../errors.js';
import { createLogger, wantsPrettyLog, type Logger } from '../log.js';
import {
  exitCodeFor,
  renderError,
  type DaemonHardening,
  type DaemonIdentity,
  type StartedBy,
} from '../protocol/messages.js';
import { privateDirProblem } from '../client/socket-check.js';
import type { ResolvedSocketPath } from '../client/socket-path.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { BUILD_ID, VERSION } from '../version.js';
import { handleRequest } from './handler.js';
import { loadHardeningAddon } from './hardening-addon.js';
import { PeerIdentifier } from './peer-identity.js';
import { hardenProcess, refuseInspectorSignal } from './process-hardening.js';
import { BrokerServer } from './server.js';
import { ensurePrivateDir } from '../private-dir.js';
import { checkSocketPathLength } from './socket-dir.js';

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

/**
 * How often the daemon re-checks its socket directory and socket: a directory swapped or loosened
 * after start-up, or a socket removed, is noticed within this long. Two lstat calls each time.
 */
export const SOCKET_CHECK_INTERVAL_MS = 2_000;

export interface RunningDaemon {
  /** Resolves with the exit status once the daemon has stopped. */
  done: Promise<number>;
  stop(exitCode?: number): Promise<void>;
  reload(): Promise<boolean>;
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const log = options.log ?? createLogger({ level: options.logLevel });
  const env = options.env ?? process.env;
  const startedAt = Date.now();
  const broker = new Broker({
    log,
    env,
    findAdapter: adapterFor,
    ...(options.adapterModules && { adapterModules: options.adapterModules }),
  });
  const configFile = options.config.path;
  let configLoadedAt = 0;
  let lastReloadError: string | null = null;
  let reloads = 0;
  let startupConfigError: BrokerError | undefined;
  let managedConfig: string | null = null;
  let managedConfigError: string | null = null;
  // Looked up at every load: a managed config installed or removed later is seen at the next reload.
  const managedLocation = () => resolveManagedConfigPath({ env, platformPath: options.managedPath });
  const home = env.HOME || os.homedir();
  const directories = new DirectoryChooser();
  const audit = new AuditLog({ dir: auditDir(env, process.platform, home), log });

  const addon = loadHardeningAddon();
  const peers = addon.addon ? new PeerIdentifier(addon.addon) : undefined;
  const hardening: DaemonHardening = options.hardening ?? {
    addon: peers !== undefined,
    nonDumpable: false,
    coreLimitZero: false,
    peerCredentials: peers !== undefined,
    problems: addon.problem === undefined ? [] : [addon.problem],
  };
  const telemetry = new Telemetry({
    log,
    env,
    envAllowed: options.telemetryEnv ?? false,
    readProfile: async (name) => (await broker.get(name)).value,
    profiles: () => broker.status(),
    hardening: () => hardening,
    ...(options.claudeSandbox && { claudeSandbox: options.claudeSandbox }),
  });
  // Besides the cache, what a config decides: which directory gets which profile, the trail, and
  // what is exported (whose salt may change the trail's fingerprints).
  const install = async (config: LoadedConfig): Promise<Awaited<ReturnType<Broker['apply']>>> => {
    const summary = await broker.apply(config);
    directories.setRules(config.directories);
    await audit.setEnabled(config.audit);
    audit.useOrgSalt(await telemetry.apply(config.telemetry));
    await audit.setListener(telemetry.enabled ? (record) => telemetry.record(record) : undefined);
    return summary;
  };

  // An organisation that manages the profiles may leave users with no config of their own.
  const starter =
    options.config.from === 'default' && !managedLocation() ? await writeStarterConfig(configFile, { env }) : undefined;
  if (starter)
    log.info({ config: configFile, keychain: starterKeychain(starter) }, starterMessage(starter, configFile));

  const load = async (): Promise<LoadedConfig> => {
    const config = await loadConfig(configFile, broker.pool.acquire, home, { managed: managedLocation() });
    managedConfig = config.managed?.file ?? null;
    managedConfigError = config.managed?.error ?? null;
    if (config.managed?.error) log.error({ managedConfig: config.managed.file }, config.managed.error);
    for (const w of config.warnings)
      log.warn({ config: w.file, line: w.line, path: w.path }, `config: ${w.path}: ${w.message}`);
    return config;
  };
  try {
    const config = await load();
    await install(config);
    configLoadedAt = Date.now();
  } catch (err) {
    // Start anyway: requests get this error (a clear message beats a shim timing out on a
    // daemon that never started), and a SIGHUP after the fix loads the config.
    startupConfigError = asBrokerError(err, 'CONFIG_INVALID', `cannot load ${configFile}`);
    lastReloadError = renderError(startupConfigError);
    log.error(
      { config: configFile, err: startupConfigError },
      'config invalid: serving errors until it is fixed and reloaded (SIGHUP)',
    );
    await broker.releaseUnusedAdapters();
  }
  await audit.open();

  const identity: DaemonIdentity = { pid: process.pid, version: VERSION };
  if (BUILD_ID) identity.build = BUILD_ID;
  if (options.startedBy) identity.startedBy = options.startedBy;

  const server = new BrokerServer({
    log,
    // The executable is for the trail only: one readlink a request saved when it is off.
    peerCredentials: peers && ((fd) => peers.credentials(fd, audit.enabled)),
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
          configError: () => startupConfigError,
          identity: () => identity,
          info: () => ({
            ...identity,
            uptimeMs: Date.now() - startedAt,
            socket: options.socket.path,
            config: configFile,
            configLoadedAtMs: configLoadedAt,
            reloads,
            lastReloadError,
            managedConfig,
            managedConfigError,
            envNames: Object.keys(env).sort(),
            hardening,
          }),
        },
        peer,
      ),
  });

  let reloading: Promise<boolean> | undefined;
  const reload = (): Promise<boolean> => {
    // SIGHUPs that arrive during a reload are folded into it.
    reloading ??= (async () => {
      try {
        const config = await load();
        const summary = await install(config);
        configLoadedAt = Date.now();
        lastReloadError = null;
        startupConfigError = undefined;
        log.info({ config: configFile, ...summary }, 'config reloaded');
        return true;
      } catch (err) {
        lastReloadError = err instanceof BrokerError ? renderError(err) : 'reload failed';
        log.error(
          { config: configFile, err: err instanceof BrokerError ? err : describeUnknownError(err) },
          'config reload failed: still serving the previous config',
        );
        await broker.releaseUnusedAdapters();
        return false;
      } finally {
        reloads++;
        reloading = undefined;
      }
    })();
    return reloading;
  };

  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  let stopping: Promise<void> | undefined;
  const socketWatch: { timer?: NodeJS.Timeout } = {};
  const stop = (exitCode = 0): Promise<void> => {
    stopping ??= (async () => {
      log.info({ exitCode }, 'stopping');
      clearInterval(socketWatch.timer);
      await server.close();
      await audit.close();
      await telemetry.close();
      await broker.close();
      // A signal that arrives between removing the handlers and the process exiting would get
      // the default action (killed by SIGTERM, socket state unknown): a process-owning daemon
      // keeps them, and a second SIGTERM just joins this stop.
      if (!options.ownsProcess) removeSignalHandlers();
      unwatchManaged();
      log.info('stopped');
      resolveDone(exitCode);
    })();
    return stopping;
  };

  /**
   * An administrator (or MDM) replacing the managed config cannot signal every user's daemon, so
   * each daemon looks at it (a stat every 30 s, also for a file not there yet) and reloads when it
   * changes. A change that fails to load keeps the previous config, as a SIGHUP would.
   */
  let unwatchManaged = (): void => {};
  const watchManaged = (): (() => void) => {
    const interval = options.managedPollMs ?? 30_000;
    if (interval <= 0) return () => {};
    const fromEnv = env[MANAGED_CONFIG_ENV];
    const paths = [
      options.managedPath ?? platformManagedConfigPath(),
      fromEnv ? path.resolve(fromEnv) : undefined,
    ].filter((p): p is string => p !== undefined);
    const onChange =
      (file: string) =>
      (curr: Stats, prev: Stats): void => {
        if (
          curr.mtimeMs === prev.mtimeMs &&
          curr.ino === prev.ino &&
          curr.size === prev.size &&
          curr.mode === prev.mode &&
          curr.uid === prev.uid
        )
          return;
        log.info({ managedConfig: file }, 'managed config changed: reloading');
        void reload();
      };
    const listeners = paths.map((file) => {
      const listener = onChange(file);
      watchFile(file, { interval, persistent: false }, listener);
      return [file, listener] as const;
    });
    return () => {
      for (const [file, listener] of listeners) unwatchFile(file, listener);
    };
  };

  const onHup = (): void => void reload();
  const onTerm = (): void => void stop(0);
  const removeSignalHandlers = (): void => {
    process.off('SIGHUP', onHup);
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onTerm);
  };
  // Installed before the socket answers: a signal that arrives as soon as a client could see
  // the daemon must get the graceful path, not the default action.
  process.on('SIGHUP', onHup);
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onTerm);

  const socketDir = path.dirname(options.socket.path);
  let socketDirIno: number | undefined;
  // Logged before the first request can be served (see BrokerServer.listen).
  const announce = (): void =>
    log.info(
      {
        socket: options.socket.path,
        config: configFile,
        profiles: broker.profileNames(),
        version: VERSION,
        build: BUILD_ID,
        startedBy: options.startedBy,
        inheritedFd: options.listenFd !== undefined,
      },
      'listening',
    );
  try {
    if (options.listenFd !== undefined) {
      socketDirIno = (await fs.lstat(socketDir).catch(() => undefined))?.ino;
      await server.listenFd(options.listenFd, announce);
    } else {
      checkSocketPathLength(options.socket.path);
      await ensurePrivateDir(socketDir);
      // The directory just checked is the one watched below.
      socketDirIno = (await fs.lstat(socketDir)).ino;
      await server.listen(options.socket.path, announce);
    }
  } catch (err) {
    removeSignalHandlers();
    await audit.close();
    await telemetry.close();
    await broker.close();
    throw err;
  }

  // The directory was private when we bound; someone who can change that later (root, or the
  // owner of a shared parent) could swap it for one holding their own socket, or open it up.
  // Nothing keeps a directory from changing under a held fd, so it is re-checked on a timer.
  const checkSocket = async (): Promise<void> => {
    if (stopping) return;
    let problem: string | undefined;
    const st = await fs.lstat(socketDir).catch((err: NodeJS.ErrnoException) => err);
    if (st instanceof Error) problem = `socket directory ${socketDir} is gone (${st.code ?? 'error'})`;
    else
      problem =
        privateDirProblem(socketDir, st)?.what ??
        (st.ino !== socketDirIno ? `socket directory ${socketDir} was replaced` : undefined);
    // Under socket activation the socket file is systemd's, not ours to judge.
    if (!problem && options.listenFd === undefined) problem = await server.socketFileProblem();
    if (!problem || stopping) return;
    log.error(
      { socket: options.socket.path },
      `${problem}: stopping, so that clients cannot be misled and a fresh daemon (started by the service manager or the next keybroker-shim) checks the path again`,
    );
    void stop(exitCodeFor('UNSAFE_PATH'));
  };
  // (A socket-activated daemon's directory is systemd's; when our path rules name none, there is
  // nothing of ours to watch.)
  if (socketDirIno !== undefined) {
    socketWatch.timer = setInterval(() => void checkSocket(), SOCKET_CHECK_INTERVAL_MS);
    socketWatch.timer.unref();
  }
  unwatchManaged = watchManaged();

  return { done, stop, reload };
}

/** The first-run line: where the starter config is, and the one command that makes it serve a key. */
function starterMessage(starter: StarterSource, configFile: string): string {
  return starter.kind === 'keyring'
    ? `no config found: wrote a starter config to ${configFile} whose default profile reads the key from ${starter.what} (keyring:default) — store it there with: keybroker key set default`
    : `no config found: wrote a starter config to ${configFile} — edit it, then run: keybroker reload (or kill -HUP ${process.pid})`;
}

function starterKeychain(starter: StarterSource): string {
  return starter.kind === 'keyring' ? starter.what : `none (${starter.why ?? 'not probed'}): a file: source instead`;
}

/** Run the daemon as the process's main job; resolves with the exit status. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const log =
    options.log ?? createLogger({ level: options.logLevel, pretty: wantsPrettyLog(options.env ?? process.env) });
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
      process.stderr.write(`keybroker: ${renderError(err)}\n`);
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
