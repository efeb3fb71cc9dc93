// The daemon's config as one object that owns its state: the first load (writing a starter config
// on a first run), reloads (SIGHUP, `keybroker reload`, a managed config that changed), and what
// status says about both. A config that cannot be loaded at start-up does not stop the daemon: gets
// are answered with its error until a reload loads it. A reload that fails keeps the previous one.
import type { AuditLog } from '../audit/audit-log.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import type { Broker, ReloadSummary } from '../cache/broker.js';
import type { DirectoryChooser } from '../config/directories.js';
import { ConfigError, formatProblems, loadConfig, type LoadedConfig } from '../config/load.js';
import { resolveManagedConfigPath, type ManagedLocation } from '../config/managed.js';
import { writeStarterConfig, type StarterSource } from '../config/starter.js';
import { asBrokerError, BrokerError, describeUnknownError } from '../errors.js';
import type { Logger } from '../log.js';
import { renderError, type StatusReply } from '../protocol/messages.js';

export interface ConfigStateOptions {
  file: string;
  /** The file is the default one (no --config, no KEYBROKER_CONFIG): a missing one gets a starter. */
  isDefault: boolean;
  env: NodeJS.ProcessEnv;
  home: string;
  /** Where to look for the managed config (tests); default: the platform's path. */
  managedPath?: string | undefined;
  /** What a config decides: the cache, which directory gets which profile, the trail, the export. */
  broker: Broker;
  directories: DirectoryChooser;
  audit: AuditLog;
  telemetry: Telemetry;
  log: Logger;
}

/** What `status` reports about the config. */
export type ConfigStatus = Pick<
  StatusReply['daemon'],
  'config' | 'configLoadedAtMs' | 'reloads' | 'lastReloadError' | 'managedConfig' | 'managedConfigError'
>;

export class ConfigState {
  readonly file: string;
  readonly #options: ConfigStateOptions;
  readonly #log: Logger;
  #loadedAt = 0;
  #lastReloadError: string | null = null;
  #reloads = 0;
  #startupError: BrokerError | undefined;
  #managedConfig: string | null = null;
  #managedConfigError: string | null = null;
  #reloading: Promise<boolean> | undefined;

  constructor(options: ConfigStateOptions) {
    this.#options = options;
    this.file = options.file;
    this.#log = options.log;
  }

  /** Set while the config could not be loaded at start-up: gets answer with it. */
  get startupError(): BrokerError | undefined {
    return this.#startupError;
  }

  /** The first load. Never throws: a config that fails is kept as the startup error. */
  async start(): Promise<void> {
    // An organisation that manages the profiles may leave users with no config of their own.
    const starter =
      this.#options.isDefault && !this.#managedLocation()
        ? await writeStarterConfig(this.file, { env: this.#options.env })
        : undefined;
    if (starter)
      this.#log.info({ config: this.file, keychain: starterKeychain(starter) }, starterMessage(starter, this.file));
    try {
      await this.#install(await this.#load());
      this.#loadedAt = Date.now();
    } catch (err) {
      // Start anyway: requests get this error (a clear message beats a shim timing out on a
      // daemon that never started), and a SIGHUP after the fix loads the config.
      this.#startupError = asBrokerError(err, 'CONFIG_INVALID', `cannot load ${this.file}`);
      this.#lastReloadError = configErrorReport(this.#startupError);
      logConfigError(
        this.#log,
        this.file,
        this.#startupError,
        'config invalid: serving errors until it is fixed and reloaded (SIGHUP)',
      );
      await this.#options.broker.releaseUnusedAdapters();
    }
  }

  /** Load the config again; resolves false when it failed (the previous one is still served). */
  reload(): Promise<boolean> {
    // Reloads asked for during a reload are folded into it.
    this.#reloading ??= (async () => {
      try {
        const summary = await this.#install(await this.#load());
        this.#loadedAt = Date.now();
        this.#lastReloadError = null;
        this.#startupError = undefined;
        this.#log.info({ config: this.file, ...summary }, 'config reloaded');
        return true;
      } catch (err) {
        this.#lastReloadError = err instanceof BrokerError ? configErrorReport(err) : 'reload failed';
        // With no config loaded yet, gets are answered with the config's error: the file's error
        // now, not the one it had at start (its lines have moved since).
        if (this.#startupError) this.#startupError = asBrokerError(err, 'CONFIG_INVALID', `cannot load ${this.file}`);
        if (err instanceof BrokerError)
          logConfigError(this.#log, this.file, err, 'config reload failed: still serving the previous config');
        else
          this.#log.error(
            { config: this.file, err: describeUnknownError(err) },
            'config reload failed: still serving the previous config',
          );
        await this.#options.broker.releaseUnusedAdapters();
        return false;
      } finally {
        this.#reloads++;
        this.#reloading = undefined;
      }
    })();
    return this.#reloading;
  }

  status(): ConfigStatus {
    return {
      config: this.file,
      configLoadedAtMs: this.#loadedAt,
      reloads: this.#reloads,
      lastReloadError: this.#lastReloadError,
      managedConfig: this.#managedConfig,
      managedConfigError: this.#managedConfigError,
    };
  }

  /** Looked up at every load: a managed config installed or removed later is seen at the next reload. */
  #managedLocation(): ManagedLocation | undefined {
    return resolveManagedConfigPath({ env: this.#options.env, platformPath: this.#options.managedPath });
  }

  async #load(): Promise<LoadedConfig> {
    const { broker, home } = this.#options;
    const config = await loadConfig(this.file, broker.pool.acquire, home, { managed: this.#managedLocation() });
    this.#managedConfig = config.managed?.file ?? null;
    this.#managedConfigError = config.managed?.error ?? null;
    if (config.managed?.error) this.#log.error({ managedConfig: config.managed.file }, config.managed.error);
    for (const w of config.warnings)
      this.#log.warn({ config: w.file, line: w.line, path: w.path }, `config: ${w.path}: ${w.message}`);
    return config;
  }

  async #install(config: LoadedConfig): Promise<ReloadSummary> {
    const summary = await this.#options.broker.apply(config);
    this.#options.directories.setRules(config.directories);
    const { audit, telemetry } = this.#options;
    await audit.setEnabled(config.audit);
    // The export's salt, when it has one, is the trail's too: fingerprints compare across laptops.
    audit.useOrgSalt(await telemetry.apply(config.telemetry));
    await audit.setListener(telemetry.enabled ? (record) => telemetry.record(record) : undefined);
    return summary;
  }
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

/** A config error for people (status, `keybroker reload`): every problem, one per line. */
function configErrorReport(err: BrokerError): string {
  return err instanceof ConfigError ? err.report : renderError(err);
}

/**
 * A config that did not load, in the log: the summary (the error, as clients get it), then each
 * problem as its own record with its file, line and path, so a log reader sees one problem a line.
 */
function logConfigError(log: Logger, file: string, err: BrokerError, summary: string): void {
  log.error({ config: file, err }, summary);
  if (!(err instanceof ConfigError)) return;
  for (const p of err.problems)
    log.error(
      { config: err.file, line: p.line, path: p.path || undefined },
      `config: ${formatProblems(err.file, [p])}`,
    );
}
