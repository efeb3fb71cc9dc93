// OpenTelemetry export end to end: a real daemon exporting over OTLP/HTTP (JSON) to a fake
// collector (test/fakes/fake-otlp-receiver.ts), driven by the real shim run by a stand-in Claude
// Code and by the CLI. What arrives — metrics with their attributes, the audit records field for
// field — and what never does: a key, in any encoding, or an endpoint or header from the
// environment of a daemon that was not started as a service. The shim is the one `setup claude`
// writes (native where built); other gets and status go over the daemon's socket from this process.
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import type { Reply } from '../../src/protocol/messages.js';
import { FakeOtlpReceiver, type MetricPoint } from '../fakes/fake-otlp-receiver.js';
import { cleanUp } from '../helpers/cleanup.js';
import {
  daemonStatus,
  privateTempDir,
  SETUP_SHIM,
  shellQuote,
  startDaemon,
  waitFor,
  type DaemonHandle,
} from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';

const WORK_KEY = 'sk-work-otel-4e91c2d7';
const COLLECTOR_TOKEN = 'collector-token-77b1a0';
const SESSION_HEADER_TOKEN = 'claude-session-otel-token-1f3e';
const ORG_SALT = 'acme-fingerprint-salt-2026';

/** Every form a value could take in what is sent. */
function encodings(value: string): string[] {
  const b = Buffer.from(value, 'utf8');
  return [value, b.toString('base64'), b.toString('base64url'), b.toString('hex'), b.toString('hex').toUpperCase()];
}

function orgFingerprint(value: string): string {
  const key = createHash('sha256').update(ORG_SALT, 'utf8').digest();
  return createHmac('sha256', key).update(value).digest('hex').slice(0, 12);
}

/** The latest point of `name` whose attributes include `attrs`. */
function latest(points: MetricPoint[], attrs: Record<string, unknown>): MetricPoint | undefined {
  return points.filter((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v)).at(-1);
}

/** A get over the daemon's socket, as any client sends it. */
function get(d: DaemonHandle, profile = 'default'): Promise<Reply> {
  return d.request({ v: 1, op: 'get', profile });
}

describe('a daemon with telemetry: on', () => {
  const receiver = new FakeOtlpReceiver();
  /** Where the session's OTEL_EXPORTER_OTLP_ENDPOINT points: nothing may arrive here. */
  const sessionCollector = new FakeOtlpReceiver();
  let d: DaemonHandle;
  let trail: AuditRecord[];

  beforeAll(async () => {
    await receiver.listen();
    cleanUp(() => receiver.close());
    await sessionCollector.listen();
    cleanUp(() => sessionCollector.close());
    const dir = privateTempDir();
    fs.mkdirSync(path.join(dir, 'code', 'acme'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'work.key'), WORK_KEY);
    // Claude Code's user settings run the agent's commands in its sandbox.
    fs.mkdirSync(path.join(dir, '.claude'));
    fs.writeFileSync(path.join(dir, '.claude', 'settings.json'), '{"sandbox": {"enabled": true}}');
    d = await startDaemon({
      dir,
      config: [
        'telemetry:',
        `  endpoint: ${receiver.url}`,
        '  interval: 1s',
        `  salt: ${ORG_SALT}`,
        '  headers:',
        '    x-collector-token: {profile: collector}',
        '    x-team: platform',
        'profiles:',
        '  work:',
        '    source: exec:cat ./work.key',
        '  collector:',
        '    source: env:KB_COLLECTOR_TOKEN',
      ].join('\n'),
      env: {
        KB_COLLECTOR_TOKEN: COLLECTOR_TOKEN,
        OTEL_BLRP_SCHEDULE_DELAY: '100',
        KEYBROKER_CLAUDE_MANAGED_DIR: path.join(dir, 'no-managed-settings'),
        // What Claude Code's managed settings put in a session's environment for its own collector.
        OTEL_EXPORTER_OTLP_ENDPOINT: sessionCollector.url,
        OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer ${SESSION_HEADER_TOKEN}`,
      },
    });
    const claude = startFakeClaude(dir, { ...d.env, ...CLAUDE_ENV }, 'claude', path.join(dir, 'code', 'acme'));
    // Start-up, then two quick repeats: a suspected 401 (refetched), then a rejection.
    expect((await claude.callHelper(`${shellQuote(SETUP_SHIM)} work`)).stdout).toBe(`${WORK_KEY}\n`);
    expect((await claude.callHelper(`${shellQuote(SETUP_SHIM)} work`)).stdout).toBe(`${WORK_KEY}\n`);
    expect((await claude.callHelper(`${shellQuote(SETUP_SHIM)} work`)).code).toBe(7);
    claude.close();
    expect(await get(d, 'work')).toMatchObject({ ok: true, value: WORK_KEY });
    expect(await get(d, 'nope')).toMatchObject({ ok: false, error: { code: 'UNKNOWN_PROFILE' } });
    const trailFile = path.join(d.env.XDG_STATE_HOME!, 'keybroker', 'audit.jsonl');
    await waitFor(
      () => fs.existsSync(trailFile) && fs.readFileSync(trailFile, 'utf8').trim().split('\n').length >= 5,
      10_000,
      'the local trail',
    );
    trail = fs
      .readFileSync(trailFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    await waitFor(
      () =>
        receiver.logRecords().length >= trail.length &&
        receiver.metricPoints('keybroker.rejections').length > 0 &&
        latest(receiver.metricPoints('keybroker.requests'), { profile: 'nope' }) !== undefined,
      15_000,
      'records and metrics at the receiver',
    );
  }, 40_000);

  it('sends the audit records with the same fields as the local trail, and nothing more', () => {
    const sent = receiver.logRecords();
    expect(sent.map((r) => r.eventName)).toEqual(trail.map(() => 'keybroker.audit'));
    expect(sent.map((r) => r.attributes)).toEqual(trail);
    // The trail itself fingerprints under the organisation's salt.
    const work = trail.filter((r) => r.profile === 'work' && r.outcome !== 'error');
    expect(work.length).toBeGreaterThan(0);
    for (const r of work) expect(r.fingerprint).toBe(orgFingerprint(WORK_KEY));
    expect(trail.find((r) => r.rejected)?.rejected).toEqual({ fingerprint: orgFingerprint(WORK_KEY) });
  });

  it('counts gets by profile, outcome and invocation, rejections and backend fetches', async () => {
    const requests = receiver.metricPoints('keybroker.requests');
    expect(
      latest(requests, { op: 'get', profile: 'work', outcome: 'fetched', invocation: 'api-key-helper' })?.value,
    ).toBe(1);
    expect(
      latest(requests, { op: 'get', profile: 'work', outcome: 'refetched', invocation: 'api-key-helper' })?.value,
    ).toBe(1);
    expect(
      latest(requests, {
        op: 'get',
        profile: 'work',
        outcome: 'error',
        invocation: 'api-key-helper',
        error: 'KEY_REJECTED',
      })?.value,
    ).toBe(1);
    expect(latest(requests, { op: 'get', profile: 'nope', outcome: 'error', error: 'UNKNOWN_PROFILE' })?.value).toBe(1);
    expect(latest(receiver.metricPoints('keybroker.rejections'), { profile: 'work' })?.value).toBeGreaterThanOrEqual(1);
    // The store's reads, as the daemon counts them. A read after the rejection may land after the
    // export waited for above: the count reaches the collector by the next export (interval 1 s).
    let fetches = 0;
    const exported = (): number | undefined =>
      latest(receiver.metricPoints('keybroker.fetches'), { profile: 'work', source: 'exec' })?.value;
    await waitFor(
      async () => {
        fetches = (await daemonStatus(d)).profiles.find((p) => p.name === 'work')!.fetches;
        return exported() === fetches;
      },
      5_000,
      'the fetch count to be exported',
    ).catch(() => {});
    expect(fetches).toBeGreaterThanOrEqual(2);
    expect(exported()).toBe(fetches);
    expect(latest(receiver.metricPoints('keybroker.forced_fetches_limited'), { profile: 'work' })?.value).toBe(0);
  });

  it("reports the fingerprint each profile serves, under the organisation's salt, and the hardening and Claude Code's sandbox", () => {
    const served = receiver.metricPoints('keybroker.served_version');
    expect(latest(served, { profile: 'work' })?.attributes).toEqual({
      profile: 'work',
      fingerprint: orgFingerprint(WORK_KEY),
    });
    const hardening = receiver.metricPoints('keybroker.hardening');
    expect(new Set(hardening.map((p) => p.attributes.part))).toEqual(
      new Set(['addon', 'non_dumpable', 'core_limit_zero', 'peer_credentials']),
    );
    expect(latest(hardening, { part: 'core_limit_zero' })?.value).toBe(1);
    expect(receiver.metricPoints('keybroker.claude_sandbox').at(-1)?.value).toBe(1);
  });

  it('names the host, the user and the daemon instance in the resource', () => {
    const [point] = receiver.metricPoints('keybroker.requests');
    expect(point?.resource).toMatchObject({
      'service.name': 'keybroker',
      'host.name': os.hostname(),
      'user.name': os.userInfo().username,
    });
    // Random per daemon start: two daemons on one host are told apart.
    expect(point?.resource['service.instance.id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(receiver.logRecords()[0]?.resource['host.name']).toBe(os.hostname());
  });

  it("sends the header read from a profile, and nothing from the environment of a daemon that is not a service's", () => {
    expect(receiver.requests.length).toBeGreaterThan(0);
    for (const r of receiver.requests) {
      expect(r.headers['x-collector-token']).toBe(COLLECTOR_TOKEN);
      expect(r.headers['x-team']).toBe('platform');
      expect(r.headers.authorization).toBeUndefined();
    }
    expect(sessionCollector.requests).toEqual([]);
  });

  it('never sends a value: not the key, raw, base64 or hex, in any body or header', () => {
    const everything = receiver.requests.map((r) => {
      const { 'x-collector-token': _token, ...headers } = r.headers;
      return `${r.body}\n${JSON.stringify(headers)}`;
    });
    for (const secret of [WORK_KEY, COLLECTOR_TOKEN, SESSION_HEADER_TOKEN, ORG_SALT])
      for (const form of encodings(secret)) for (const text of everything) expect(text).not.toContain(form);
  });

  it('shows the export in status: where to, from the config, what was sent', async () => {
    const s = await daemonStatus(d);
    expect(s.telemetry).toMatchObject({
      metrics: `${receiver.url}/v1/metrics`,
      logs: `${receiver.url}/v1/logs`,
      fromEnvironment: false,
      orgSalt: true,
      lastError: null,
    });
    expect(s.telemetry!.logRecords.exported).toBeGreaterThanOrEqual(trail.length);
    expect(s.telemetry!.logRecords.dropped).toBe(0);
    expect((await d.cli(['status'])).stdout).toContain(`telemetry ${receiver.url}/v1/metrics`);
  });
});

describe('resource attributes', () => {
  it('leaves out the host and the user when told to', async () => {
    const receiver = new FakeOtlpReceiver();
    await receiver.listen();
    cleanUp(() => receiver.close());
    const d = await startDaemon({
      config: [
        'telemetry:',
        `  endpoint: ${receiver.url}`,
        '  interval: 1s',
        '  host: false',
        '  user: false',
        'profiles:',
        '  default:',
        '    source: env:KB_KEY',
      ].join('\n'),
      env: { KB_KEY: WORK_KEY },
    });
    expect(await get(d)).toMatchObject({ ok: true });
    await waitFor(() => receiver.metricPoints('keybroker.requests').length > 0, 10_000, 'metrics');
    const resource = receiver.metricPoints('keybroker.requests')[0]!.resource;
    expect(resource['service.name']).toBe('keybroker');
    expect(resource).not.toHaveProperty('host.name');
    expect(resource).not.toHaveProperty('user.name');
  }, 20_000);
});

describe('a service-started daemon (--telemetry-env)', () => {
  it('takes the endpoint and headers from OTEL_EXPORTER_OTLP_*', async () => {
    const receiver = new FakeOtlpReceiver();
    await receiver.listen();
    cleanUp(() => receiver.close());
    const d = await startDaemon({
      args: ['--telemetry-env'],
      config: ['telemetry:', '  interval: 1s', 'profiles:', '  default:', '    source: env:KB_KEY'].join('\n'),
      env: {
        KB_KEY: WORK_KEY,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_HEADERS: 'x-org-token=from-the-unit',
      },
    });
    expect(await get(d)).toMatchObject({ ok: true });
    await waitFor(() => receiver.metricPoints('keybroker.requests').length > 0, 10_000, 'metrics');
    expect(receiver.requests[0]!.headers['x-org-token']).toBe('from-the-unit');
    expect((await daemonStatus(d)).telemetry).toMatchObject({ fromEnvironment: true, metrics: null });
  }, 20_000);

  it('without the flag, an endpoint only in the environment is none: status says so, gets are served', async () => {
    const receiver = new FakeOtlpReceiver();
    await receiver.listen();
    cleanUp(() => receiver.close());
    const d = await startDaemon({
      config: ['telemetry: {}', 'profiles:', '  default:', '    source: env:KB_KEY'].join('\n'),
      env: { KB_KEY: WORK_KEY, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
    });
    expect(await get(d)).toMatchObject({ ok: true, value: WORK_KEY });
    expect((await daemonStatus(d)).telemetry?.lastError?.code).toBe('CONFIG_INVALID');
    await new Promise((r) => setTimeout(r, 1500));
    expect(receiver.requests).toEqual([]);
  }, 20_000);
});
