// The audit writer on a real file system: modes, rotation, the bounded buffer, write failures,
// and fingerprints that tell versions apart without being a plain hash of the value.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, type AuditEvent } from '../../src/audit/audit-log.js';
import { readAudit, renderAudit } from '../../src/audit/audit-reader.js';
import { table } from '../../src/cli/output.js';
import { createLogger } from '../../src/log.js';
import { SecretValue } from '../../src/secret.js';
import { privateTempDir } from '../helpers/daemon.js';

let root: string;
let dir: string;
let t: number;
const log = createLogger({ level: 'silent' });
const make = (extra: Partial<ConstructorParameters<typeof AuditLog>[0]> = {}): AuditLog =>
  new AuditLog({ dir, log, now: () => t, ...extra });
const event = (value: string, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  op: 'get',
  profile: 'work',
  chosenBy: 'directory',
  directory: '~/code/acme',
  cwd: '/home/a/code/acme',
  outcome: 'hit',
  served: { value: SecretValue.fromString(value), version: undefined },
  ...extra,
});

beforeEach(() => {
  root = privateTempDir('kb-audit-');
  dir = path.join(root, 'state', 'keybroker');
  t = Date.parse('2026-11-26T10:00:00.000Z');
});

describe('the file', () => {
  it('is created 0600 in a 0700 directory, one JSON line per record, with the injected clock', async () => {
    const audit = make();
    await audit.open();
    audit.record(event('sk-one'));
    t += 1000;
    audit.record(
      event('sk-one', { outcome: 'fetched', served: { value: SecretValue.fromString('sk-two'), version: '7' } }),
    );
    await audit.flush();
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(audit.file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'audit.salt')).mode & 0o777).toBe(0o600);
    const lines = fs
      .readFileSync(audit.file, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      time: '2026-11-26T10:00:00.000Z',
      op: 'get',
      profile: 'work',
      chosenBy: 'directory',
      cwd: '/home/a/code/acme',
      outcome: 'hit',
    });
    expect(lines[0]!.fingerprint).toMatch(/^[0-9a-f]{12}$/);
    expect(lines[1]).toMatchObject({ time: '2026-11-26T10:00:01.000Z', version: '7' });
    expect(lines[1]!.fingerprint).toBeUndefined();
    expect(audit.status()).toMatchObject({ enabled: true, written: 2, dropped: 0, lastError: null });
  });

  it('fingerprints tell values apart, repeat for the same value, and differ from unsalted hashes', async () => {
    const audit = make();
    await audit.open();
    for (const v of ['sk-a', 'sk-a', 'sk-b']) audit.record(event(v));
    await audit.flush();
    const fps = (await readAudit(dir)).records.map((r) => r.fingerprint);
    expect(fps[0]).toBe(fps[1]);
    expect(fps[0]).not.toBe(fps[2]);
    const text = fs.readFileSync(audit.file, 'utf8');
    for (const v of ['sk-a', 'sk-b']) {
      expect(text).not.toContain(v);
      for (const algo of ['sha256', 'sha1', 'md5']) {
        const hex = createHash(algo).update(v).digest('hex');
        expect(text).not.toContain(hex.slice(0, 12));
        expect(text).not.toContain(createHash(algo).update(v).digest('base64').slice(0, 12));
      }
    }
    // The salt persists: a new writer (a restarted daemon) gives the same fingerprint.
    const again = make();
    await again.open();
    again.record(event('sk-a'));
    await again.flush();
    expect((await readAudit(dir)).records.at(-1)!.fingerprint).toBe(fps[0]);
  });

  it('rotates past maxFileBytes, keeping one previous file, and reads both back oldest first', async () => {
    const audit = make({ maxFileBytes: 600 });
    await audit.open();
    for (let i = 0; i < 12; i++) {
      audit.record(event('sk', { profile: `p${i}` }));
      await audit.flush();
    }
    const files = fs.readdirSync(dir).sort();
    expect(files).toEqual(['audit.jsonl', 'audit.jsonl.1', 'audit.salt']);
    expect(fs.statSync(path.join(dir, 'audit.jsonl')).size).toBeLessThanOrEqual(600);
    expect(fs.statSync(path.join(dir, 'audit.jsonl.1')).mode & 0o777).toBe(0o600);
    const profiles = (await readAudit(dir)).records.map((r) => r.profile);
    // Older records went with the file rotated away twice; what is left is in order, newest last.
    expect(profiles.at(-1)).toBe('p11');
    expect(profiles).toEqual([...profiles].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
    expect(profiles.length).toBeLessThan(12);
  });
});

describe('never in the way of a get', () => {
  it('a full buffer drops records and counts them', async () => {
    const audit = make({ maxBufferedRecords: 5, flushRecords: 1000 });
    await audit.open();
    for (let i = 0; i < 8; i++) audit.record(event('sk'));
    expect(audit.status().dropped).toBe(3);
    await audit.flush();
    expect(audit.status()).toMatchObject({ written: 5, dropped: 3 });
  });

  it('a burst is written in a few appends, not one per record', async () => {
    const audit = make();
    await audit.open();
    for (let burst = 0; burst < 4; burst++) {
      for (let i = 0; i < 2_500; i++) audit.record(event('sk'));
      // Let the batch timers run between bursts, as they would between requests.
      await new Promise((r) => setImmediate(r));
    }
    expect(fs.existsSync(audit.file) ? fs.readFileSync(audit.file, 'utf8').split('\n').length - 1 : 0).toBeLessThan(
      10_000,
    );
    await audit.flush();
    expect(audit.status().written).toBe(10_000);
    expect(audit.status().writes).toBeLessThanOrEqual(4);
  });

  it('a write that fails (the file replaced by a symlink) is a warning in status, and the records are counted as dropped', async () => {
    const audit = make();
    await audit.open();
    fs.writeFileSync(path.join(root, 'elsewhere'), '');
    fs.symlinkSync(path.join(root, 'elsewhere'), audit.file);
    audit.record(event('sk'));
    await audit.flush();
    expect(audit.status()).toMatchObject({ written: 0, dropped: 1, lastError: { code: 'ELOOP' } });
    expect(fs.readFileSync(path.join(root, 'elsewhere'), 'utf8')).toBe('');
    // Fixed: the next write succeeds and clears the warning (the count stays).
    fs.rmSync(audit.file);
    audit.record(event('sk'));
    await audit.flush();
    expect(audit.status()).toMatchObject({ written: 1, dropped: 1, lastError: null });
  });

  it('refuses a state directory open to others, and drops instead of writing there', async () => {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    const audit = make();
    await audit.open();
    expect(audit.status().lastError).toMatchObject({ code: 'UNSAFE_PATH' });
    audit.record(event('sk'));
    await audit.flush();
    expect(fs.existsSync(audit.file)).toBe(false);
    expect(audit.status().dropped).toBe(1);
  });

  it('off (audit: false) records nothing and counts nothing', async () => {
    const audit = make({ enabled: false });
    await audit.open();
    audit.record(event('sk'));
    await audit.flush();
    expect(fs.existsSync(dir)).toBe(false);
    expect(audit.status()).toMatchObject({ enabled: false, written: 0, dropped: 0 });
  });
});

describe('reading it back', () => {
  it('shows control characters from a client-supplied cwd or process name as ?, never raw', async () => {
    const audit = make();
    await audit.open();
    audit.record(
      event('sk', { cwd: '/home/a/\u001b[2J\nfake row', consumer: { pid: 7, name: 'evil\u0007', claudeCode: false } }),
    );
    await audit.flush();
    const text = renderAudit((await readAudit(dir)).records, '/home/a', table);
    expect([...text].filter((c) => c !== '\n' && c.charCodeAt(0) < 0x20)).toEqual([]);
    expect(text.trimEnd().split('\n')).toHaveLength(2);
    expect(text).toContain('~/?[2J?fake row');
  });

  it('refuses a trail that others can write to, rather than believe it', async () => {
    const audit = make();
    await audit.open();
    audit.record(event('sk'));
    await audit.flush();
    fs.chmodSync(audit.file, 0o622);
    await expect(readAudit(dir)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });
});
