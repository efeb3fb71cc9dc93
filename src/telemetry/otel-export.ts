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

export function startOtelExport(settings: TelemetrySettings, sources: ExportSources): OtelExport {
  const now = sources.now ?? Date.now;
  const counts = { exported: 0, dropped: 0, metricOk: 0, metricFailed: 0 };
  let lastError: TelemetryStatus['lastError'] = null;
  const fail = (code: string, message: string): void => {
    // One warning per kind of failure, not one per export while the collector stays down.
    if (lastError?.code !== code) sources.log.warn({ code, dropped: counts.dropped }, message);
    lastError = { code, message, atMs: now() };
  };
  const succeeded = (): void => {
    if (lastError) sources.log.info('telemetry: exporting again');
    lastError = null;
  };
  /** Records handed to the SDK and not yet exported or dropped. */
  let pending = 0;

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
        exporter: countingMetricExporter(metricExporter, {
          ok: () => {
            counts.metricOk++;
            succeeded();
          },
          failed: (code) => {
            counts.metricFailed++;
            fail(code, `telemetry: metric export failed (${code}): the next one carries the totals`);
          },
        }),
        exportIntervalMillis: settings.metricIntervalMs,
        exportTimeoutMillis: Math.min(EXPORT_TIMEOUT_MS, settings.metricIntervalMs),
      }),
    ],
  });
  const loggerProvider = new LoggerProvider({
    resource,
    processors: [
      new BatchLogRecordProcessor({
        exporter: countingLogExporter(logExporter, {
          done: (n, code) => {
            pending -= n;
            if (code === undefined) {
              counts.exported += n;
              succeeded();
            } else {
              counts.dropped += n;
              fail(code, `telemetry: log export failed (${code}): ${n} audit records dropped`);
            }
          },
        }),
        // Our own bound (pending) is the stricter one, so the SDK's queue never drops uncounted.
        maxQueueSize: MAX_QUEUED_RECORDS,
        maxExportBatchSize: 512,
        scheduledDelayMillis: settings.logDelayMs,
        // Longer than the exporter's own timeout, so its callback (and our count) always comes.
        exportTimeoutMillis: EXPORT_TIMEOUT_MS + 5_000,
      }),
    ],
  });

  const served = new Map<string, KeyVersion>();
  const requests = new Map<string, number>();
  observeMetrics(meterProvider, sources, served, counts);
  const requestCounter = meterProvider.getMeter(METER).createCounter('keybroker.requests', {
    description: 'Requests (get, refresh, set) by profile, outcome and invocation',
  });
  const rejectionCounter = meterProvider.getMeter(METER).createCounter('keybroker.rejections', {
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
      requests.set(record.profile, (requests.get(record.profile) ?? 0) + 1);
      if (record.rejected) rejectionCounter.add(1, { profile: record.profile });
      if (record.outcome !== 'error' && (record.version !== undefined || record.fingerprint !== undefined))
        served.set(record.profile, { version: record.version, fingerprint: record.fingerprint });
      if (pending >= MAX_QUEUED_RECORDS) {
        counts.dropped++;
        if (lastError?.code !== 'QUEUE_FULL')
          fail('QUEUE_FULL', `telemetry: ${MAX_QUEUED_RECORDS} audit records waiting: dropping more`);
        return;
      }
      pending++;
      logger.emit({
        timestamp: Date.parse(record.time),
        eventName: 'keybroker.audit',
        // The record as the local trail has it, field for field.
        attributes: record as unknown as AnyValueMap,
      });
    },
    status(): TelemetryStatus {
      return {
        metrics: displayUrl(settings.metricsUrl),
        logs: displayUrl(settings.logsUrl),
        fromEnvironment: settings.fromEnvironment,
        orgSalt: sources.orgSalt,
        logRecords: { waiting: pending, exported: counts.exported, dropped: counts.dropped },
        metricExports: { ok: counts.metricOk, failed: counts.metricFailed },
        lastError,
      };
    },
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

/** Callbacks read at each metric export: what the cache did, what each profile serves, hardening. */
function observeMetrics(
  provider: MeterProvider,
  sources: ExportSources,
  served: Map<string, KeyVersion>,
  counts: { dropped: number; metricFailed: number },
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
      result.observe(dropped, counts.dropped, { signal: 'logs' });
      const inSandbox = await sources.claudeSandbox?.().catch(() => undefined);
      if (inSandbox !== undefined) result.observe(sandbox, inSandbox ? 1 : 0);
    },
    [fetches, limited, version, hardening, sandbox, dropped],
  );
}

/** The SDK's exporter, counting each export's outcome (by error code only: an error may quote a response). */
function countingMetricExporter(
  inner: PushMetricExporter,
  on: { ok(): void; failed(code: string): void },
): PushMetricExporter {
  return {
    export(metrics: ResourceMetrics, callback) {
      inner.export(metrics, (result) => {
        if (result.code === 0) on.ok();
        else on.failed(errorCode(result.error));
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
  on: { done(records: number, code: string | undefined): void },
): LogRecordExporter {
  return {
    export(records: ReadableLogRecord[], callback) {
      inner.export(records, (result) => {
        on.done(records.length, result.code === 0 ? undefined : errorCode(result.error));
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
