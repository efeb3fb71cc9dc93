// The daemon's life: load config (writing a starter one on first run), listen, serve, reload on
// SIGHUP, stop cleanly on SIGTERM/SIGINT.
import path from 'node:path';
import type { AdapterModule } from '../adapter.js';
import { Broker } from '../cache/broker.js';
import { loadConfig, type LoadedConfig, type ResolvedConfigPath } from '../config/load.js';
import { writeStarterConfig } from '../config/starter.js';
import { BrokerError, describeUnknownError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import type { ResolvedSocketPath } from '../protocol/socket-path.js';
import { VERSION } from '../version.js';
import { handleRequest } from './handler.js';
import { BrokerServer } from './server.js';
import { checkSocketPathLength, ensurePrivateDir } from './socket-dir.js';

export interface DaemonOptions {
  config: ResolvedConfigPath;
  socket: ResolvedSocketPath;
  logLevel?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** A listening socket inherited from systemd (LISTEN_FDS), used instead of binding. */
  listenFd?: number | undefined;
  log?: Logger;
  /** Adapter modules to use instead of the registry's (tests with fake backend clients). */
  adapterModules?: Partial<Record<string, AdapterModule>>;
}

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
  const broker = new Broker({ log, env, ...(options.adapterModules && { adapterModules: options.adapterModules }) });
  const configFile = options.config.path;
  let configLoadedAt = 0;
  let lastReloadError: string | null = null;
  let reloads = 0;
  let startupConfigError: BrokerError | undefined;

  if (options.config.from === 'default' && (await writeStarterConfig(configFile))) {
    log.info({ config: configFile }, `no config found: wrote a starter config to ${configFile} — edit it, then run: keybroker reload (or kill -HUP ${process.pid})`);
  }

  const load = async (): Promise<LoadedConfig> => loadConfig(configFile, broker.pool.acquire);
  try {
    const config = await load();
    await broker.apply(config);
    configLoadedAt = Date.now();
  } catch (err) {
    // Start anyway: requests get this error (a clear message beats a shim timing out on a
    // daemon that never started), and a SIGHUP after the fix loads the config.
    startupConfigError = err instanceof BrokerError ? err : new BrokerError('CONFIG_INVALID', `cannot load ${configFile}`);
    lastReloadError = startupConfigError.message;
    log.error({ config: configFile, err: startupConfigError }, 'config invalid: serving errors until it is fixed and reloaded (SIGHUP)');
    await broker.releaseUnusedAdapters();
  }

  const server = new BrokerServer({
    log,
    handle: (request) =>
      handleRequest(request, {
        broker,
        version: VERSION,
        now: Date.now,
        configError: () => startupConfigError,
        info: () => ({
          pid: process.pid,
          version: VERSION,
          uptimeMs: Date.now() - startedAt,
          socket: options.socket.path,
          config: configFile,
          configLoadedAtMs: configLoadedAt,
          reloads,
          lastReloadError,
        }),
      }),
  });

  let reloading: Promise<boolean> | undefined;
  const reload = (): Promise<boolean> => {
    // SIGHUPs that arrive during a reload are folded into it.
    reloading ??= (async () => {
      try {
        const config = await load();
        const summary = await broker.apply(config);
        configLoadedAt = Date.now();
        lastReloadError = null;
        startupConfigError = undefined;
        log.info({ config: configFile, ...summary }, 'config reloaded');
        return true;
      } catch (err) {
        lastReloadError = err instanceof BrokerError ? err.message : 'reload failed';
        log.error({ config: configFile, err: err instanceof BrokerError ? err : describeUnknownError(err) }, 'config reload failed: still serving the previous config');
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
  const stop = (exitCode = 0): Promise<void> => {
    stopping ??= (async () => {
      log.info({ exitCode }, 'stopping');
      await server.close();
      await broker.close();
      process.off('SIGHUP', onHup);
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onTerm);
      log.info('stopped');
      resolveDone(exitCode);
    })();
    return stopping;
  };

  const onHup = (): void => void reload();
  const onTerm = (): void => void stop(0);
  // Installed before the socket answers: a signal that arrives as soon as a client could see
  // the daemon must get the graceful path, not the default action.
  process.on('SIGHUP', onHup);
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onTerm);

  try {
    if (options.listenFd !== undefined) {
      await server.listenFd(options.listenFd);
    } else {
      checkSocketPathLength(options.socket.path);
      await ensurePrivateDir(path.dirname(options.socket.path));
      await server.listen(options.socket.path);
    }
    log.info(
      { socket: options.socket.path, config: configFile, profiles: broker.profileNames(), version: VERSION, inheritedFd: options.listenFd !== undefined },
      'listening',
    );
  } catch (err) {
    process.off('SIGHUP', onHup);
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onTerm);
    await broker.close();
    throw err;
  }

  return { done, stop, reload };
}

/** Run the daemon as the process's main job; resolves with the exit status. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const log = options.log ?? createLogger({ level: options.logLevel });
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
    daemon = await startDaemon({ ...options, log });
  } catch (err) {
    if (err instanceof BrokerError) {
      log.fatal({ err }, 'could not start');
      process.stderr.write(`keybroker: ${err.message}\n`);
      return err.exitCode;
    }
    log.fatal(describeUnknownError(err), 'could not start');
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
    log.warn({ warning: warning.name, code: (warning as NodeJS.ErrnoException).code }, warning.message.split('\n')[0]!.slice(0, 200));
  });
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
    // eslint-disable-next-line no-console -- replacing the console is the point
    console[method] = (...args: unknown[]) => {
      const first = args.length > 0 && typeof args[0] === 'string' ? args[0].split('\n')[0]!.slice(0, 200) : '(non-text output)';
      log.debug({ via: `console.${method}` }, first);
    };
  }
}
