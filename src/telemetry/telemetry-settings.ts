// What the `telemetry:` block and the daemon's environment decide, worked out before any of the
// OpenTelemetry SDK loads: where to send, how often, and which variables the exporters may read.
//
// The endpoint and headers come from the config, or — for a daemon a service manager started,
// which passes --telemetry-env — from the standard OTEL_EXPORTER_OTLP_* variables. Never from the
// environment of whoever autostarted the daemon: that is a Claude Code session's, and an
// organisation's managed settings set OTEL_EXPORTER_OTLP_HEADERS there for Claude Code's own
// collector; a daemon that read it would send that token wherever its own config points.
// The interval variables (OTEL_METRIC_EXPORT_INTERVAL, OTEL_BLRP_SCHEDULE_DELAY) say how often,
// not where, so they are honoured from any environment.
import type { RawTelemetry, ValueOrProfile } from '../config/schema.js';

/** Names of the variables that say where OTLP goes, with what credentials: read only when allowed. */
export const OTLP_DESTINATION_PREFIX = 'OTEL_EXPORTER_OTLP_';

export const DEFAULT_METRIC_INTERVAL_MS = 60_000;
export const DEFAULT_LOG_DELAY_MS = 1_000;
/** Audit records waiting to be sent (queued or in the export under way), at most. */
export const MAX_QUEUED_RECORDS = 2048;
/** One export's time, retries with backoff included (the SDK's retrying transport keeps within it). */
export const EXPORT_TIMEOUT_MS = 10_000;

export interface TelemetrySettings {
  /** undefined: the SDK takes OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT (only with fromEnvironment). */
  metricsUrl: string | undefined;
  logsUrl: string | undefined;
  /** The exporters may read OTEL_EXPORTER_OTLP_* (endpoint, headers, certificates). */
  fromEnvironment: boolean;
  headers: Record<string, ValueOrProfile>;
  salt: ValueOrProfile | undefined;
  host: boolean;
  user: boolean;
  metricIntervalMs: number;
  logDelayMs: number;
}

export type SettingsResult =
  { ok: true; settings: TelemetrySettings; warnings: string[] } | { ok: false; reason: string };

/** Base URL + signal path, as OTEL_EXPORTER_OTLP_ENDPOINT is treated. */
export function signalUrl(base: string, signal: 'metrics' | 'logs'): string {
  return `${base.replace(/\/+$/, '')}/v1/${signal}`;
}

/**
 * The settings for `raw`. `envAllowed`: the daemon was started by a service unit that passes
 * --telemetry-env. An endpoint is needed from somewhere: the SDK's fallback, localhost:4318, is
 * not a destination anyone chose.
 */
export function resolveTelemetrySettings(
  raw: RawTelemetry,
  env: NodeJS.ProcessEnv,
  envAllowed: boolean,
): SettingsResult {
  const warnings: string[] = [];
  const fromEnv = (name: string): string | undefined => (envAllowed && env[name] ? env[name] : undefined);
  const envBase = fromEnv('OTEL_EXPORTER_OTLP_ENDPOINT');
  const hasEndpoint = (signal: 'METRICS' | 'LOGS'): boolean =>
    raw.endpoint !== undefined ||
    envBase !== undefined ||
    fromEnv(`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`) !== undefined;
  if (!hasEndpoint('METRICS') || !hasEndpoint('LOGS')) {
    return {
      ok: false,
      reason: envAllowed
        ? 'telemetry: no endpoint: set telemetry.endpoint, or OTEL_EXPORTER_OTLP_ENDPOINT in the service environment'
        : 'telemetry: no endpoint: set telemetry.endpoint (OTEL_EXPORTER_OTLP_* are read only by a daemon started as a service)',
    };
  }
  const protocol = fromEnv('OTEL_EXPORTER_OTLP_PROTOCOL');
  if (protocol !== undefined && protocol !== 'http/json')
    warnings.push(`telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=${protocol} is not supported: sending http/json`);
  return {
    ok: true,
    warnings,
    settings: {
      metricsUrl: raw.endpoint === undefined ? undefined : signalUrl(raw.endpoint, 'metrics'),
      logsUrl: raw.endpoint === undefined ? undefined : signalUrl(raw.endpoint, 'logs'),
      fromEnvironment: envAllowed,
      headers: raw.headers ?? {},
      salt: raw.salt,
      host: raw.host ?? true,
      user: raw.user ?? true,
      metricIntervalMs: raw.interval ?? envMs(env, 'OTEL_METRIC_EXPORT_INTERVAL', DEFAULT_METRIC_INTERVAL_MS, warnings),
      logDelayMs: envMs(env, 'OTEL_BLRP_SCHEDULE_DELAY', DEFAULT_LOG_DELAY_MS, warnings),
    },
  };
}

/** A positive whole number of milliseconds from `name`, else `fallback` (with a warning if it was set). */
function envMs(env: NodeJS.ProcessEnv, name: string, fallback: number, warnings: string[]): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const ms = Number(text);
  if (Number.isInteger(ms) && ms >= 100 && ms <= 3_600_000) return ms;
  warnings.push(`telemetry: ${name}=${text} is not a number of milliseconds from 100 to 3600000: using ${fallback}`);
  return fallback;
}

/** A URL as status shows it: no user:password. */
export function displayUrl(url: string | undefined): string | null {
  if (url === undefined) return null;
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.href;
  } catch {
    return null;
  }
}

/**
 * Run `construct` (synchronous: nothing else runs meanwhile) with process.env's OTLP destination
 * variables replaced by `allowed`'s, then put them back. The SDK's exporters read them while they
 * are built, as fallbacks for what the code leaves out — headers are even merged under ours — so
 * this is the one place that decides which they see.
 */
export function withOtlpEnvironment<T>(allowed: NodeJS.ProcessEnv, construct: () => T): T {
  const saved: Record<string, string | undefined> = {};
  const names = new Set(
    [...Object.keys(process.env), ...Object.keys(allowed)].filter((k) => k.startsWith(OTLP_DESTINATION_PREFIX)),
  );
  for (const name of names) {
    saved[name] = process.env[name];
    if (allowed[name] === undefined) delete process.env[name];
    else process.env[name] = allowed[name];
  }
  try {
    return construct();
  } finally {
    for (const name of names) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  }
}
