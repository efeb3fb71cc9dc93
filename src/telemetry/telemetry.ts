// The daemon's handle on OpenTelemetry export (docs/telemetry.md): started by a `telemetry:`
// block, restarted when a reload changes it, stopped when it goes. The SDK is in otel-export.ts,
// loaded with import() the first time a config turns export on, never otherwise.
//
// It also owns the organisation's salt: with `telemetry.salt` set, fingerprints — in what is
// sent and in the local audit trail — are made under it, so the same key has the same
// fingerprint on every laptop and "who still serves the old key" has an answer.
import { createHash, randomUUID } from 'node:crypto';
import os from 'node:os';
import type { AuditRecord } from '../audit/audit-record.js';
import type { RawTelemetry, ValueOrProfile } from '../config/schema.js';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DaemonHardening, ProfileStatus, TelemetryStatus } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';
import { VERSION } from '../version.js';
import type { OtelExport } from './otel-export.js';
import { resolveTelemetrySettings, type TelemetrySettings } from './telemetry-settings.js';

export interface TelemetryOptions {
  log: Logger;
  env: NodeJS.ProcessEnv;
  /** Read OTEL_EXPORTER_OTLP_* from `env`: the daemon was started by a service unit (--telemetry-env). */
  envAllowed: boolean;
  /** A profile's current value (the cache's), for a header or the salt. */
  readProfile(name: string): Promise<SecretValue>;
  profiles(): ProfileStatus[];
  hardening(): DaemonHardening;
  /** Whether Claude Code's sandbox is on for this user (undefined: cannot tell). */
  claudeSandbox?(): Promise<boolean | undefined>;
}

export class Telemetry {
  readonly #options: TelemetryOptions;
  #export: OtelExport | undefined;
  /** The settings the running export was built from, to tell whether a reload changes them. */
  #applied = '';
  #problem: TelemetryStatus['lastError'] = null;
  readonly #instanceId = randomUUID();

  constructor(options: TelemetryOptions) {
    this.#options = options;
  }

  /**
   * Apply a config's `telemetry:` block (undefined: off). Resolves with the organisation's salt
   * for fingerprints, or undefined for the installation's own. Never throws: a problem (no
   * endpoint, the salt's profile failing) is logged and shown in status, and the daemon serves on.
   */
  async apply(raw: RawTelemetry | undefined): Promise<Buffer | undefined> {
    const key = JSON.stringify(raw ?? null);
    if (key === this.#applied && (raw === undefined || this.#export)) return this.#salt;
    await this.close();
    this.#applied = key;
    this.#salt = undefined;
    this.#problem = null;
    if (!raw) return undefined;
    const { log, env, envAllowed } = this.#options;
    const resolved = resolveTelemetrySettings(raw, env, envAllowed);
    if (!resolved.ok) {
      this.#fail('CONFIG_INVALID', resolved.reason);
      return undefined;
    }
    for (const w of resolved.warnings) log.warn(w);
    try {
      this.#salt = raw.salt === undefined ? undefined : await this.#saltFrom(raw.salt);
    } catch (err) {
      this.#fail(
        err instanceof BrokerError ? err.code : 'INTERNAL',
        `telemetry: cannot read the salt's profile: fingerprints use this installation's salt until a reload`,
      );
    }
    this.#export = await this.#start(resolved.settings);
    log.info(
      { metrics: resolved.settings.metricsUrl ?? '(OTEL_EXPORTER_OTLP_*)', orgSalt: this.#salt !== undefined },
      'telemetry: exporting',
    );
    return this.#salt;
  }

  #salt: Buffer | undefined;

  record(record: AuditRecord): void {
    this.#export?.record(record);
  }

  get enabled(): boolean {
    return this.#export !== undefined || this.#problem !== null;
  }

  status(): TelemetryStatus | undefined {
    if (this.#export) {
      const s = this.#export.status();
      return this.#problem && !s.lastError ? { ...s, lastError: this.#problem } : s;
    }
    if (!this.#problem) return undefined;
    return {
      metrics: null,
      logs: null,
      fromEnvironment: this.#options.envAllowed,
      orgSalt: false,
      logRecords: { waiting: 0, exported: 0, dropped: 0 },
      metricExports: { ok: 0, failed: 0 },
      lastError: this.#problem,
    };
  }

  async flush(): Promise<void> {
    await this.#export?.flush();
  }

  async close(): Promise<void> {
    const running = this.#export;
    this.#export = undefined;
    this.#applied = '';
    await running?.shutdown();
  }

  async #start(settings: TelemetrySettings): Promise<OtelExport> {
    const { startOtelExport } = await import('./otel-export.js');
    const { log, env } = this.#options;
    // service.instance.id: random per daemon, so two daemons on one host (two users, a restart)
    // are told apart without naming anything.
    const resource: Record<string, string> = {
      'service.name': 'keybroker',
      'service.version': VERSION,
      'service.instance.id': this.#instanceId,
    };
    if (settings.host) resource['host.name'] = os.hostname();
    if (settings.user) resource['user.name'] = userName(env);
    return startOtelExport(settings, {
      log,
      otlpEnv: settings.fromEnvironment ? env : {},
      headers: () => this.#headers(settings.headers),
      resource,
      profiles: this.#options.profiles,
      hardening: this.#options.hardening,
      ...(this.#options.claudeSandbox && { claudeSandbox: this.#options.claudeSandbox }),
      orgSalt: this.#salt !== undefined,
    });
  }

  /**
   * The configured headers, a profile's value read from the cache at each export. A header whose
   * profile fails is left out (the collector then refuses the export, which is counted).
   */
  async #headers(spec: Record<string, ValueOrProfile>): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const [name, v] of Object.entries(spec)) {
      if (typeof v === 'string') {
        out[name] = v;
        continue;
      }
      try {
        // The header is where this value is for: revealed into the request, nowhere else.
        out[name] = (await this.#options.readProfile(v.profile)).reveal();
      } catch (err) {
        this.#fail(
          err instanceof BrokerError ? err.code : 'INTERNAL',
          `telemetry: header ${name}: profile ${v.profile} failed: sending without it`,
        );
      }
    }
    return out;
  }

  async #saltFrom(spec: ValueOrProfile): Promise<Buffer> {
    // Hashed to a fixed-size key: the same text gives the same key on every laptop.
    if (typeof spec === 'string') return createHash('sha256').update(spec, 'utf8').digest();
    const value = await this.#options.readProfile(spec.profile);
    return value.peek((bytes) => createHash('sha256').update(bytes).digest());
  }

  #fail(code: string, message: string): void {
    if (this.#problem?.code !== code) this.#options.log.warn({ code }, message);
    this.#problem = { code, message, atMs: Date.now() };
  }
}

function userName(env: NodeJS.ProcessEnv): string {
  try {
    return os.userInfo().username;
  } catch {
    return env.USER ?? env.LOGNAME ?? String(process.getuid?.() ?? 'unknown');
  }
}
