// The OpenTelemetry side: the official SDK's meter and logger providers with its OTLP/HTTP (JSON)
// exporters. This is the only module that imports the SDK, and the daemon loads it with import()
// only when the config has a `telemetry:` block, so a daemon without one never reads it (the
// bundle keeps @opentelemetry/* out: scripts/bundle.mjs).
//
// A get never waits for any of it: record() only hands a record to the SDK's batch processor,
// and metrics are counters and callbacks read when the periodic reader exports. What can pile up
// is bounded: at most MAX_QUEUED_RECORDS audit records wait (queued or in the export under way);
// beyond that they are dropped and counted, as are the records of an export that failed after
// the SDK's retries with backoff. A metric export that fails loses nothing lasting: counters are
// cumulative, the next export carries the totals.
import type { Attributes } from '@opentelemetry/api';
import type { AnyValueMap } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchLogRecordProcessor,
  LoggerProvider,
  type LogRecordExporter,
  type ReadableLogRecord,
} from '@opentelemetry/sdk-logs';
import {
  AggregationTemporality,
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { AuditRecord, KeyVersion } from '../audit/audit-record.js';
import type { Logger } from '../log.js';
import type { DaemonHardening, ProfileStatus, TelemetryStatus } from '../protocol/messages.js';
import {
  displayUrl,
  EXPORT_TIMEOUT_MS,
  MAX_QUEUED_RECORDS,
  withOtlpEnvironment,
  type TelemetrySettings,
} from './telemetry-settings.js';

/** What the export reads from the daemon; none of it is a value. */
export interface ExportSources {
  log: Logger;
  /** The variables the exporters may read (the daemon's own, or none: see telemetry-settings.ts). */
  otlpEnv: NodeJS.ProcessEnv;
  /** Header values, read at each export (a profile's value is the cache's, so a rotation is seen). */
  headers(): Promise<Record<string, string>>;
  resource: Record<string, string>;
  profiles(): ProfileStatus[];
  hardening(): DaemonHardening;
  /** Whether Claude Code's sandbox is on for this user (undefined: cannot tell; no point is sent). */
  claudeSandbox?(): Promise<boolean | undefined>;
  orgSalt: boolean;
  now?: () => number;
}

export interface OtelExport {
  record(record: AuditRecord): void;
  status(): TelemetryStatus;
  /** Send what is waiting (bounded by the export timeout), then stop. */
  shutdown(): Promise<void>;
  /** Export metrics and records now (tests, bench). */
  flush(): Promise<void>;
}

const METER = 'keybroker';
/** How long a stop waits for the last export. */
const SHUTDOWN_WAIT_MS = 2_000;

/**
 * What the export did: records waiting (queued or in the export under way), sent and dropped;
 * metric exports; the last problem, logged once per kind rather than once per export while the
 * collector stays down.
 */
class ExportHealth {
  exported = 0;
  dropped = 0;
  metricOk = 0;
  metricFailed = 0;
  /** Records handed to the SDK and not yet exported or dropped. */
  waiting = 0;
  lastError: TelemetryStatus['lastError'] = null;
  readonly #log: Logger;
  readonly #now: () => number;

  constructor(log: Logger, now: () => number) {
    this.#log = log;
    this.#now = now;
  }

  /** Room for one more record? Counts it as waiting, or as dropped. */
  admit(): boolean {
    if (this.waiting < MAX_QUEUED_RECORDS) {
      this.waiting++;
      return true;
    }
    this.dropped++;
    this.fail('QUEUE_FULL', `telemetry: ${MAX_QUEUED_RECORDS} audit records waiting: dropping more`);
    return false;
  }

  logsDone(records: number, code: string | undefined): void {
    this.waiting -= records;
    if (code === undefined) {
      this.exported += records;
      this.#succeeded();
    } else {
      this.dropped += records;
      this.fail(code, `telemetry: log export failed (${code}): ${records} audit records dropped`);
    }
  }

  metricsDone(code: string | undefined): void {
    if (code === undefined) {
      this.metricOk++;
      this.#succeeded();
    } else {
      this.metricFailed++;
      this.fail(code, `telemetry: metric export failed (${code}): the next one carries the totals`);
    }
  }

  fail(code: string, message: string): void {
    if (this.lastError?.code !== code) this.#log.warn({ code, dropped: this.dropped }, message);
    this.lastError = { code, message, atMs: this.#now() };
  }

  #succeeded(): void {
    if (this.lastError) this.#log.info('telemetry: exporting again');
    this.lastError = null;
  }
}

export function startOtelExport(settings: TelemetrySettings, sources: ExportSources): OtelExport {
  const health = new ExportHealth(sources.log, sources.now ?? Date.now);
  const { meterProvider, loggerProvider } = createProviders(settings, sources, health);
  const served = new Map<string, KeyVersion>();
  observeMetrics(meterProvider, sources, served, health);
  const meter = meterProvider.getMeter(METER);
  const requestCounter = meter.createCounter('keybroker.requests', {
    description: 'Requests (get, refresh, set) by profile, outcome and invocation',
  });
  const rejectionCounter = meter.createCounter('keybroker.rejections', {
    description: "Repeat requests that suggested the consumer's key was rejected (a 401)",
  });
  const logger = loggerProvider.getLogger(METER);

  return {
    record(record: AuditRecord): void {
      const attrs: Attributes = {
        op: record.op,
        profile: record.profile,
        outcome: record.outcome,
        invocation: record.consumer?.invocation ?? (record.consumer ? 'none' : 'no-consumer'),
      };
      if (record.error !== undefined) attrs.error = record.error;
      requestCounter.add(1, attrs);
      if (record.rejected) rejectionCounter.add(1, { profile: record.profile });
      if (record.outcome !== 'error' && (record.version !== undefined || record.fingerprint !== undefined))
        served.set(record.profile, { version: record.version, fingerprint: record.fingerprint });
      if (!health.admit()) return;
      logger.emit({
        timestamp: Date.parse(record.time),
        eventName: 'keybroker.audit',
        // The record as the local trail has it, field for field.
        attributes: record as unknown as AnyValueMap,
      });
    },
    status: (): TelemetryStatus => ({
      metrics: displayUrl(settings.metricsUrl),
      logs: displayUrl(settings.logsUrl),
      fromEnvironment: settings.fromEnvironment,
      orgSalt: sources.orgSalt,
      logRecords: { waiting: health.waiting, exported: health.exported, dropped: health.dropped },
      metricExports: { ok: health.metricOk, failed: health.metricFailed },
      lastError: health.lastError,
    }),
    async flush(): Promise<void> {
      await Promise.all([meterProvider.forceFlush(), loggerProvider.forceFlush()]);
    },
    async shutdown(): Promise<void> {
      // A collector that does not answer must not hold up a stop or a reload for the export timeout.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([meterProvider.shutdown(), loggerProvider.shutdown()]),
        new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_WAIT_MS).unref())),
      ]);
      clearTimeout(timer);
    },
  };
}

/** The SDK's exporters (built where they can see only the allowed variables) and providers. */
function createProviders(
  settings: TelemetrySettings,
  sources: ExportSources,
  health: ExportHealth,
): { meterProvider: MeterProvider; loggerProvider: LoggerProvider } {
  const { metricExporter, logExporter } = withOtlpEnvironment(sources.otlpEnv, () => ({
    metricExporter: new OTLPMetricExporter({
      url: settings.metricsUrl,
      headers: sources.headers,
      timeoutMillis: Math.min(EXPORT_TIMEOUT_MS, settings.metricIntervalMs),
      temporalityPreference: AggregationTemporality.CUMULATIVE,
    }),
    logExporter: new OTLPLogExporter({
      url: settings.logsUrl,
      headers: sources.headers,
      timeoutMillis: EXPORT_TIMEOUT_MS,
    }),
  }));
  const resource = resourceFromAttributes(sources.resource);
  const meterProvider = new MeterProvider({
    resource,
    readers: [
      new PeriodicExportingMetricReader({
        exporter: countingMetricExporter(metricExporter, (code) => health.metricsDone(code)),
        exportIntervalMillis: settings.metricIntervalMs,
        exportTimeoutMillis: Math.min(EXPORT_TIMEOUT_MS, settings.metricIntervalMs),
      }),
    ],
  });
  const loggerProvider = new LoggerProvider({
    resource,
    processors: [
      new BatchLogRecordProcessor({
        exporter: countingLogExporter(logExporter, (records, code) => health.logsDone(records, code)),
        // Our own bound (health.admit) is the stricter one, so the SDK's queue never drops uncounted.
        maxQueueSize: MAX_QUEUED_RECORDS,
        maxExportBatchSize: 512,
        scheduledDelayMillis: settings.logDelayMs,
        // Longer than the exporter's own timeout, so its callback (and our count) always comes.
        exportTimeoutMillis: EXPORT_TIMEOUT_MS + 5_000,
      }),
    ],
  });
  return { meterProvider, loggerProvider };
}

/** Callbacks read at each metric export: what the cache did, what each profile serves, hardening. */
function observeMetrics(
  provider: MeterProvider,
  sources: ExportSources,
  served: Map<string, KeyVersion>,
  health: ExportHealth,
): void {
  const meter = provider.getMeter(METER);
  const fetches = meter.createObservableCounter('keybroker.fetches', {
    description: 'Reads from the backend (the store), by profile and source kind',
  });
  const limited = meter.createObservableCounter('keybroker.forced_fetches_limited', {
    description: "Forced fetches (refreshes, suspected rejections) refused by the profile's rate limit",
  });
  const version = meter.createObservableGauge('keybroker.served_version', {
    description: 'The version each profile last served: 1, with its version label or salted fingerprint',
  });
  const hardening = meter.createObservableGauge('keybroker.hardening', {
    description: "1 when this part of the daemon's hardening is in place, else 0",
  });
  const sandbox = meter.createObservableGauge('keybroker.claude_sandbox', {
    description: "1 when Claude Code's settings (managed, else the user's) run the agent's commands in its sandbox",
  });
  const dropped = meter.createObservableCounter('keybroker.telemetry.dropped', {
    description: 'Audit records the export dropped (queue full, collector failing)',
  });
  meter.addBatchObservableCallback(
    async (result) => {
      for (const p of sources.profiles()) {
        result.observe(fetches, p.fetches, { profile: p.name, source: p.kind });
        result.observe(limited, p.forcedFetchesLimited ?? 0, { profile: p.name });
      }
      for (const [profile, v] of served) {
        const attrs: Attributes = { profile };
        if (v.version !== undefined) attrs.version = v.version;
        if (v.fingerprint !== undefined) attrs.fingerprint = v.fingerprint;
        result.observe(version, 1, attrs);
      }
      const h = sources.hardening();
      for (const [part, on] of [
        ['addon', h.addon],
        ['non_dumpable', h.nonDumpable],
        ['core_limit_zero', h.coreLimitZero],
        ['peer_credentials', h.peerCredentials],
      ] as const)
        result.observe(hardening, on ? 1 : 0, { part });
      result.observe(dropped, health.dropped, { signal: 'logs' });
      const inSandbox = await sources.claudeSandbox?.().catch(() => undefined);
      if (inSandbox !== undefined) result.observe(sandbox, inSandbox ? 1 : 0);
    },
    [fetches, limited, version, hardening, sandbox, dropped],
  );
}

/** The SDK's exporter, counting each export's outcome (by error code only: an error may quote a response). */
function countingMetricExporter(
  inner: PushMetricExporter,
  done: (code: string | undefined) => void,
): PushMetricExporter {
  return {
    export(metrics: ResourceMetrics, callback) {
      inner.export(metrics, (result) => {
        done(result.code === 0 ? undefined : errorCode(result.error));
        callback(result);
      });
    },
    forceFlush: () => inner.forceFlush(),
    shutdown: () => inner.shutdown(),
    ...(inner.selectAggregationTemporality && {
      selectAggregationTemporality: inner.selectAggregationTemporality.bind(inner),
    }),
    ...(inner.selectAggregation && { selectAggregation: inner.selectAggregation.bind(inner) }),
  };
}

function countingLogExporter(
  inner: LogRecordExporter,
  done: (records: number, code: string | undefined) => void,
): LogRecordExporter {
  return {
    export(records: ReadableLogRecord[], callback) {
      inner.export(records, (result) => {
        done(records.length, result.code === 0 ? undefined : errorCode(result.error));
        callback(result);
      });
    },
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
    shutdown: () => inner.shutdown(),
  };
}

/**
 * A short code for an export error: the errno, the HTTP status of a refusal, or EXPORT_FAILED (the
 * SDK gave up retrying, or timed out); never its text, which may quote the collector's response.
 */
function errorCode(err: Error | undefined): string {
  const e = err as (Error & { code?: unknown; cause?: { code?: unknown } }) | undefined;
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.code === 'number') return `HTTP_${e.code}`;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return 'EXPORT_FAILED';
}
