// The managed config's lock on `telemetry`: an organisation's collector, salt and host/user choice
// hold whatever the user's config says, and `audit: false` in it does not stop what is sent.
// Real daemons read a root-owned managed file (so this runs as root, as CI does).
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { FakeOtlpReceiver } from '../fakes/fake-otlp-receiver.js';
import { cleanUp } from '../helpers/cleanup.js';
import { privateTempDir, startDaemon, waitFor } from '../helpers/daemon.js';

const IS_ROOT = process.getuid?.() === 0;
if (!IS_ROOT) console.warn('test/telemetry/telemetry-managed.test.ts: skipped: a root-owned managed config needs root');

const KEY = 'sk-managed-otel-3d9a77';
const ORG_SALT = 'org-salt-managed-41c0';

function fingerprint(salt: string, value: string): string {
  const key = createHash('sha256').update(salt, 'utf8').digest();
  return createHmac('sha256', key).update(value).digest('hex').slice(0, 12);
}

let dir: string;
let managedFile: string;
const org = new FakeOtlpReceiver();
const users = new FakeOtlpReceiver();

beforeEach(async () => {
  dir = privateTempDir('kb-otel-managed-');
  const managedDir = path.join(dir, 'etc-keybroker');
  fs.mkdirSync(managedDir, { mode: 0o755 });
  managedFile = path.join(managedDir, 'managed.yaml');
  fs.mkdirSync(path.join(dir, 'user'), { mode: 0o700 });
  await org.listen();
  cleanUp(() => org.close());
  await users.listen();
  cleanUp(() => users.close());
});

function installManaged(text: string): void {
  fs.writeFileSync(managedFile, text, { mode: 0o644 });
  fs.chmodSync(managedFile, 0o644);
}

describe.runIf(IS_ROOT)('a managed config that locks telemetry', () => {
  it("sends to the organisation's collector, under its salt, whatever the user's telemetry: block says", async () => {
    installManaged(
      [
        'telemetry:',
        `  endpoint: ${org.url}`,
        '  interval: 1s',
        `  salt: ${ORG_SALT}`,
        '  user: true',
        'locked:',
        '  - telemetry',
      ].join('\n'),
    );
    const d = await startDaemon({
      dir: path.join(dir, 'user'),
      config: [
        'audit: false',
        'telemetry:',
        `  endpoint: ${users.url}`,
        '  salt: my-own-salt',
        '  user: false',
        'profiles:',
        '  default:',
        '    source: env:KB_KEY',
      ].join('\n'),
      env: { KEYBROKER_MANAGED_CONFIG: managedFile, KB_KEY: KEY, OTEL_BLRP_SCHEDULE_DELAY: '100' },
    });
    expect((await d.cli(['get'])).stdout).toBe(`${KEY}\n`);
    await waitFor(
      () => org.logRecords().length > 0 && org.metricPoints('keybroker.served_version').length > 0,
      10_000,
      "the organisation's collector",
    );
    expect(org.logRecords()[0]!.attributes).toMatchObject({ op: 'get', fingerprint: fingerprint(ORG_SALT, KEY) });
    expect(org.metricPoints('keybroker.served_version').at(-1)!.attributes.fingerprint).toBe(
      fingerprint(ORG_SALT, KEY),
    );
    expect(org.logRecords()[0]!.resource).toHaveProperty('user.name');
    expect(users.requests).toEqual([]);
    // The user's block is reported as ignored.
    expect(d.log()).toMatch(/"path":"telemetry"/);
    const check = await d.cli(['config', 'check']);
    expect(check.stdout + check.stderr).toContain('telemetry');
  }, 30_000);

  it('a locked key holds while the rest of the block stays the user’s; the salt may come from a profile', async () => {
    installManaged(
      [
        'telemetry:',
        `  endpoint: ${org.url}`,
        '  salt: {profile: fingerprint-salt}',
        'profiles:',
        '  fingerprint-salt:',
        '    source: env:KB_ORG_SALT',
        'locked:',
        '  - telemetry.endpoint',
        '  - telemetry.salt',
      ].join('\n'),
    );
    const d = await startDaemon({
      dir: path.join(dir, 'user'),
      config: [
        'telemetry:',
        `  endpoint: ${users.url}`,
        '  interval: 1s',
        'profiles:',
        '  default:',
        '    source: env:KB_KEY',
      ].join('\n'),
      env: { KEYBROKER_MANAGED_CONFIG: managedFile, KB_KEY: KEY, KB_ORG_SALT: ORG_SALT },
    });
    expect((await d.cli(['get'])).code).toBe(0);
    // interval: 1s is the user's and applies; the endpoint is the organisation's.
    await waitFor(
      () => org.metricPoints('keybroker.served_version').length > 0,
      10_000,
      "the organisation's collector",
    );
    expect(org.metricPoints('keybroker.served_version').at(-1)!.attributes.fingerprint).toBe(
      fingerprint(ORG_SALT, KEY),
    );
    expect(users.requests).toEqual([]);
    for (const r of org.requests) expect(r.body).not.toContain(ORG_SALT);
  }, 30_000);
});
