// A fake OpenTelemetry collector: an OTLP/HTTP receiver taking the JSON encoding, written from the
// OTLP specification (https://opentelemetry.io/docs/specs/otlp/#otlphttp) so the SDK's real
// exporters are exercised on the wire:
//
//   POST /v1/metrics   ExportMetricsServiceRequest   {resourceMetrics: [{resource, scopeMetrics: [{metrics}]}]}
//   POST /v1/logs      ExportLogsServiceRequest      {resourceLogs: [{resource, scopeLogs: [{logRecords}]}]}
//
// Success is 200 with an empty JSON object. Tests can make it fail (503, which the exporter
// retries), hang (accept the request and never answer), or read back every request: raw body
// and headers, and decoded metric points and log records with their attributes as plain values.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type ReceiverMode = 'ok' | 'fail' | 'hang';

export interface ReceivedRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/** OTLP JSON's AnyValue, decoded. */
export type Plain = string | number | boolean | null | Plain[] | { [key: string]: Plain };

export interface MetricPoint {
  name: string;
  resource: Record<string, Plain>;
  attributes: Record<string, Plain>;
  value: number;
  /** The receiver's clock when the export arrived (ms). */
  at: number;
}

export interface LogRecordReceived {
  resource: Record<string, Plain>;
  eventName: string | undefined;
  attributes: Record<string, Plain>;
  timeUnixNano: string | undefined;
  at: number;
}

interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}
interface OtlpAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: OtlpAnyValue[] };
  kvlistValue?: { values?: OtlpKeyValue[] };
}
interface OtlpNumberPoint {
  attributes?: OtlpKeyValue[];
  asInt?: string | number;
  asDouble?: number;
}

export class FakeOtlpReceiver {
  readonly requests: ReceivedRequest[] = [];
  mode: ReceiverMode = 'ok';
  /** Requests held open in 'hang' mode. */
  readonly #hanging = new Set<http.ServerResponse>();
  readonly #server: http.Server;
  #port = 0;

  constructor() {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const at = Date.now();
        this.requests.push({
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          at,
        });
        if (this.mode === 'hang') {
          this.#hanging.add(res);
          res.on('close', () => this.#hanging.delete(res));
          return;
        }
        if (this.mode === 'fail') {
          res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":14,"message":"unavailable"}');
          return;
        }
        const known = req.method === 'POST' && (req.url === '/v1/metrics' || req.url === '/v1/logs');
        res.writeHead(known ? 200 : 404, { 'content-type': 'application/json' }).end('{}');
      });
    });
  }

  async listen(port = 0): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(port, '127.0.0.1', resolve));
    this.#port = (this.#server.address() as AddressInfo).port;
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Requests currently held open (hang mode). */
  get hanging(): number {
    return this.#hanging.size;
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Every data point of every metrics export received, oldest first. */
  metricPoints(name?: string): MetricPoint[] {
    return this.requests.flatMap((r) => metricPointsOf(r, name));
  }

  /** Every log record received, oldest first. */
  logRecords(): LogRecordReceived[] {
    const out: LogRecordReceived[] = [];
    for (const r of this.requests) {
      if (r.path !== '/v1/logs') continue;
      const body = JSON.parse(r.body) as {
        resourceLogs?: Array<{
          resource?: { attributes?: OtlpKeyValue[] };
          scopeLogs?: Array<{
            logRecords?: Array<{ eventName?: string; attributes?: OtlpKeyValue[]; timeUnixNano?: string }>;
          }>;
        }>;
      };
      for (const rl of body.resourceLogs ?? []) {
        const resource = plainAttributes(rl.resource?.attributes);
        for (const sl of rl.scopeLogs ?? [])
          for (const lr of sl.logRecords ?? [])
            out.push({
              resource,
              eventName: lr.eventName,
              attributes: plainAttributes(lr.attributes),
              timeUnixNano: lr.timeUnixNano,
              at: r.at,
            });
      }
    }
    return out;
  }
}

/** The data points of one request (none unless it is a metrics export). */
export function metricPointsOf(r: ReceivedRequest, name?: string): MetricPoint[] {
  if (r.path !== '/v1/metrics') return [];
  const out: MetricPoint[] = [];
  const body = JSON.parse(r.body) as {
    resourceMetrics?: Array<{
      resource?: { attributes?: OtlpKeyValue[] };
      scopeMetrics?: Array<{
        metrics?: Array<{
          name: string;
          sum?: { dataPoints?: OtlpNumberPoint[] };
          gauge?: { dataPoints?: OtlpNumberPoint[] };
        }>;
      }>;
    }>;
  };
  for (const rm of body.resourceMetrics ?? []) {
    const resource = plainAttributes(rm.resource?.attributes);
    for (const sm of rm.scopeMetrics ?? [])
      for (const m of sm.metrics ?? []) {
        if (name !== undefined && m.name !== name) continue;
        for (const p of [...(m.sum?.dataPoints ?? []), ...(m.gauge?.dataPoints ?? [])])
          out.push({
            name: m.name,
            resource,
            attributes: plainAttributes(p.attributes),
            value: p.asDouble ?? Number(p.asInt ?? NaN),
            at: r.at,
          });
      }
  }
  return out;
}

export function plainAttributes(kvs: OtlpKeyValue[] | undefined): Record<string, Plain> {
  const out: Record<string, Plain> = {};
  for (const kv of kvs ?? []) out[kv.key] = plainValue(kv.value);
  return out;
}

function plainValue(v: OtlpAnyValue | undefined): Plain {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(plainValue);
  if (v.kvlistValue) return plainAttributes(v.kvlistValue.values);
  return null;
}
