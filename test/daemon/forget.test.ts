// keybroker forget: drop cached values from the daemon's memory now (ssh-agent -D); the next read
// fetches from the source again.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import type { StatusReply } from '../../src/protocol/messages.js';
import { startDaemon, waitFor, type DaemonHandle } from '../helpers/daemon.js';

let d: DaemonHandle;
const fetches = (name: string): number => {
  const file = path.join(d.dir, `${name}.count`);
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').length - 1 : 0;
};

beforeAll(async () => {
  const counting = (name: string) => `exec:echo x >> ./${name}.count; echo sk-${name}`;
  d = await startDaemon({
    config:
      `profiles:\n  work:\n    source: ${counting('work')}\n    ttl: 1h\n  home:\n    source: ${counting('home')}\n    ttl: 1h\n` +
      `  slow:\n    source: exec:echo x >> ./slow.count; sleep 0.5; echo sk-slow\n    ttl: 1h\n`,
  });
});

// The reads and the state checks around a forget go over the socket: what is under test is the
// forget (the CLI's), not the shim or status's rendering, and each Node client costs ~0.15-0.3 s of CPU.
const get = (profile: string) => d.request({ v: 1, op: 'get', profile });
const state = async (profile: string): Promise<string | undefined> =>
  ((await d.request({ v: 1, op: 'status' })) as StatusReply).profiles.find((p) => p.name === profile)?.state;

describe('keybroker forget', () => {
  it('drops one profile at once: the next read fetches again, other profiles stay cached', async () => {
    for (const p of ['work', 'home']) expect(await get(p)).toMatchObject({ ok: true, value: `sk-${p}` });
    expect(await get('work')).toMatchObject({ ok: true });
    const before = { work: fetches('work'), home: fetches('home') };
    expect(before).toEqual({ work: 1, home: 1 });

    expect(await d.cli(['forget', 'work'])).toMatchObject({ code: 0, stdout: 'forgot work\n' });
    expect(await state('work')).toBe('cold');
    expect(await state('home')).toBe('fresh');
    expect(fetches('work')).toBe(1); // forgetting fetches nothing

    expect(await get('work')).toMatchObject({ ok: true, value: 'sk-work' });
    expect(await get('home')).toMatchObject({ ok: true });
    expect({ work: fetches('work'), home: fetches('home') }).toEqual({ work: 2, home: 1 });
  });

  it('--all drops every profile', async () => {
    for (const p of ['work', 'home']) await get(p);
    const before = { work: fetches('work'), home: fetches('home') };
    expect(await d.cli(['forget', '--all'])).toMatchObject({
      code: 0,
      stdout: 'forgot work\nforgot home\nforgot slow\n',
    });
    for (const p of ['work', 'home']) await get(p);
    expect({ work: fetches('work'), home: fetches('home') }).toEqual({ work: before.work + 1, home: before.home + 1 });
  });

  it('does not keep a value whose fetch was running when it was forgotten', async () => {
    const pending = d.request({ v: 1, op: 'get', profile: 'slow' });
    await new Promise((r) => setTimeout(r, 200));
    expect(await d.request({ v: 1, op: 'forget', profile: 'slow' })).toMatchObject({ ok: true, forgotten: ['slow'] });
    expect(await pending).toMatchObject({ ok: true, value: 'sk-slow' }); // its waiter still gets it
    expect(await state('slow')).toBe('cold');
    expect(await d.request({ v: 1, op: 'get', profile: 'slow' })).toMatchObject({ ok: true, value: 'sk-slow' });
    expect(fetches('slow')).toBe(2);
  });

  it('says what is wrong with its arguments (exit 2) and names an unknown profile (exit 4)', async () => {
    expect(await d.cli(['forget'])).toMatchObject({ code: 2, stdout: '' });
    expect(await d.cli(['forget', 'work', '--all'])).toMatchObject({ code: 2, stdout: '' });
    expect(await d.cli(['forget', 'nope'])).toMatchObject({ code: 4, stdout: '' });
    expect(await d.request({ v: 1, op: 'forget' })).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
  });

  it('is audited: a record per profile forgotten, and one for a forget the daemon refused', async () => {
    const file = path.join(d.env.XDG_STATE_HOME!, 'keybroker', 'audit.jsonl');
    // The file's daemon is shared: earlier tests' records may still be on their way, so this
    // test's two are a forget of home directly followed by one of nope.
    const ours = (): AuditRecord[] => {
      const forgets = fs.existsSync(file)
        ? fs
            .readFileSync(file, 'utf8')
            .split('\n')
            .filter((l) => l.endsWith('}'))
            .map((l) => JSON.parse(l) as AuditRecord)
            .filter((r) => r.op === 'forget')
        : [];
      // --all wrote work, home, slow; the argument test a lone nope: only this test writes home then nope.
      const home = forgets.findIndex((r, k) => r.profile === 'home' && forgets[k + 1]?.profile === 'nope');
      return home < 0 ? [] : forgets.slice(home, home + 2);
    };
    // (The daemon writes the records, whichever client asked: the socket, not two more CLI runs.)
    expect(await d.request({ v: 1, op: 'forget', profile: 'home' })).toMatchObject({ ok: true });
    expect(await d.request({ v: 1, op: 'forget', profile: 'nope' })).toMatchObject({
      ok: false,
      error: { code: 'UNKNOWN_PROFILE' },
    });
    await waitFor(() => ours().length === 2, 5_000, 'the forget records to be written');
    const [home, nope] = ours();
    expect(home).toMatchObject({
      op: 'forget',
      profile: 'home',
      chosenBy: 'argument',
      outcome: 'forgotten',
      source: 'exec',
    });
    expect(nope).toMatchObject({ op: 'forget', profile: 'nope', outcome: 'error', error: 'UNKNOWN_PROFILE' });
    expect(fs.readFileSync(file, 'utf8')).not.toContain('sk-home');
  });

  it('--help teaches with examples', async () => {
    const help = await d.cli(['forget', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('keybroker forget --all');
  });
});
