// The collector failing must cost a get nothing: a receiver that accepts the connection and never
// answers, one that answers 503 (retried with backoff, then dropped and counted), and a burst of
// gets while nothing is being sent (the queue stays at its bound). Real daemons, real sockets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Reply } from '../../src/protocol/messages.js';
import { MAX_QUEUED_RECORDS } from '../../src/telemetry/telemetry-settings.js';
import { FakeOtlpReceiver } from '../fakes/fake-otlp-receiver.js';
import { daemonStatus, startDaemon, waitFor, type DaemonHandle } from '../helpers/daemon.js';

const KEY = 'sk-otel-down-8c2e51';

function config(endpoint: string | undefined): string {
  return [
    ...(endpoint ? ['telemetry:', `  endpoint: ${endpoint}`, '  interval: 1s'] : []),
    'profiles:',
    '  default:',
    '    source: env:KB_KEY',
  ].join('\n');
}

/** `count` gets over the socket, `parallel` at a time; each one's latency in ms. */
async function gets(d: DaemonHandle, count: number, parallel = 1): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const started = performance.now();
      const reply: Reply = await d.request({ v: 1, op: 'get', profile: 'default' });
      latencies.push(performance.now() - started);
      expect(reply.ok).toBe(true);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return latencies;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe('a collector that accepts and never answers', () => {
  const receiver = new FakeOtlpReceiver();
  let hung: DaemonHandle;
  let plain: DaemonHandle;

  beforeAll(async () => {
    await receiver.listen();
    receiver.mode = 'hang';
    [hung, plain] = await Promise.all([
      startDaemon({ config: config(receiver.url), env: { KB_KEY: KEY, OTEL_BLRP_SCHEDULE_DELAY: '100' } }),
      startDaemon({ config: config(undefined), env: { KB_KEY: KEY } }),
    ]);
    await gets(hung, 5);
    // Both signals are stuck in the receiver before anything is measured.
    await waitFor(
      () =>
        receiver.requests.some((r) => r.path === '/v1/logs') && receiver.requests.some((r) => r.path === '/v1/metrics'),
      10_000,
      'exports to hang',
    );
  }, 30_000);

  afterAll(async () => {
    await Promise.all([hung?.stop(), plain?.stop()]);
    await receiver.close();
  });

  it('never slows a get: latencies match a daemon without telemetry', async () => {
    expect(receiver.hanging).toBeGreaterThan(0);
    // Interleaved, so both see the same load on a shared machine.
    const withHung: number[] = [];
    const without: number[] = [];
    for (let round = 0; round < 5; round++) {
      withHung.push(...(await gets(hung, 40)));
      without.push(...(await gets(plain, 40)));
    }
    expect(receiver.hanging).toBeGreaterThan(0);
    // A get that waited for an export would wait for its timeout (10 s).
    expect(Math.max(...withHung)).toBeLessThan(1000);
    expect(percentile(withHung, 50)).toBeLessThan(percentile(without, 50) * 3 + 5);
    expect(percentile(withHung, 95)).toBeLessThan(percentile(without, 95) * 3 + 20);
  }, 30_000);

  it('keeps at most its bound of records waiting, and counts the rest as dropped', async () => {
    const before = (await daemonStatus(hung)).telemetry!.logRecords;
    // Enough to go past the bound by a margin from what already waits (the gets above), and no
    // more: each get is a connection and a record.
    const margin = 200;
    const burst = MAX_QUEUED_RECORDS - before.waiting + margin;
    let most = 0;
    const sampling = setInterval(
      () => void daemonStatus(hung).then((s) => (most = Math.max(most, s.telemetry!.logRecords.waiting))),
      50,
    );
    await gets(hung, burst, 16);
    clearInterval(sampling);
    const after = (await daemonStatus(hung)).telemetry!;
    // Nothing is ever exported (the receiver never answers); every record is waiting or dropped.
    expect(after.logRecords.exported).toBe(0);
    expect(after.logRecords.waiting + after.logRecords.dropped).toBe(before.waiting + before.dropped + burst);
    expect(after.logRecords.waiting).toBeLessThanOrEqual(MAX_QUEUED_RECORDS);
    expect(most).toBeLessThanOrEqual(MAX_QUEUED_RECORDS);
    expect(after.logRecords.dropped - before.dropped).toBeGreaterThanOrEqual(margin);
    expect(after.lastError?.code).toBe('QUEUE_FULL');
  }, 60_000);
});

describe('a collector that answers 503', () => {
  it('is retried with backoff, then the records are dropped and counted; the count reaches it once it is back', async () => {
    const receiver = new FakeOtlpReceiver();
    await receiver.listen();
    receiver.mode = 'fail';
    const d = await startDaemon({
      config: config(receiver.url),
      env: { KB_KEY: KEY, OTEL_BLRP_SCHEDULE_DELAY: '100' },
    });
    try {
      const latencies = await gets(d, 5);
      expect(Math.max(...latencies)).toBeLessThan(1000);
      await waitFor(
        async () => (await daemonStatus(d)).telemetry!.logRecords.dropped === 5,
        20_000,
        'the batch to be dropped',
      );
      // One batch of five records, sent more than once: the exporter retried it.
      const logPosts = receiver.requests.filter((r) => r.path === '/v1/logs');
      expect(logPosts.length).toBeGreaterThan(1);
      expect(new Set(logPosts.map((r) => r.body)).size).toBe(1);
      expect((await daemonStatus(d)).telemetry!.lastError?.code).toBe('EXPORT_FAILED');

      receiver.mode = 'ok';
      const backAt = Date.now();
      await gets(d, 2);
      await waitFor(
        () => receiver.logRecords().some((r) => r.at >= backAt),
        15_000,
        'records after the collector is back',
      );
      await waitFor(
        () => receiver.metricPoints('keybroker.telemetry.dropped').some((p) => p.at >= backAt && p.value === 5),
        15_000,
        'the dropped count to arrive',
      );
      const s = (await daemonStatus(d)).telemetry!;
      expect(s.lastError).toBeNull();
      expect(s.logRecords.exported).toBe(2);
    } finally {
      await d.stop();
      await receiver.close();
    }
  }, 60_000);
});
