// Every read in the audit trail carries the kernel's word on who asked (the hardening addon's
// SO_PEERCRED and /proc/PID/exe) beside what the client claimed: the shim Claude Code runs,
// `keybroker get`, `keybroker run` and a raw socket client. A claimed consumer that is neither the
// peer nor one of its ancestors is flagged, in the file and in `keybroker audit`.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import type { ConsumerInfo, Reply } from '../../src/protocol/messages.js';
import {
  daemonStatus,
  NATIVE_SHIM,
  SHIM,
  startDaemon,
  waitFor,
  type DaemonHandle,
  shellQuote,
} from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';
import { HARDENING_ADDON } from '../helpers/install-copy.js';

const KEY = 'sk-kernel-identity-7d21';
const NODE = fs.realpathSync(process.execPath);
/** The node the Node shim's `#!/usr/bin/env node` line finds. */
const PATH_NODE = (process.env.PATH ?? '')
  .split(':')
  .map((dir) => path.join(dir, 'node'))
  .filter((file) => fs.existsSync(file))
  .map((file) => fs.realpathSync(file))[0];
const addonMissing = fs.existsSync(HARDENING_ADDON)
  ? undefined
  : `${HARDENING_ADDON} was not built (no C compiler when npm run build ran)`;
if (addonMissing) console.log(`skipping the kernel identity tests: ${addonMissing}`);

let d: DaemonHandle;

/** One request line on a raw socket, from this process, the way any program could send it. */
function raw(request: object): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(d.socket);
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.on('end', () => resolve(JSON.parse(text) as Reply));
    socket.on('error', reject);
    socket.end(`${JSON.stringify(request)}\n`);
  });
}

/** The trail as stored (what `keybroker audit --json` prints; the table is read once, below). */
function trail(): AuditRecord[] {
  const file = path.join(d.env.XDG_STATE_HOME!, 'keybroker', 'audit.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .trimEnd()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}

/** Wait until the trail holds `n` records (it is appended every 250 ms). */
async function records(n: number): Promise<AuditRecord[]> {
  await waitFor(async () => ((await daemonStatus(d)).audit?.written ?? 0) >= n, 5_000, `${n} audit records`);
  return trail();
}

beforeAll(async () => {
  if (addonMissing) return;
  d = await startDaemon({
    prefix: 'kb-kid-',
    config: 'profiles:\n  default:\n    source: env:KB_KEY\n',
    env: { KB_KEY: KEY },
  });
});
describe.skipIf(addonMissing !== undefined)('the audit trail records the kernel identity of every read', () => {
  it('status says the daemon reads peer credentials', async () => {
    expect((await daemonStatus(d)).daemon.hardening).toMatchObject({
      addon: true,
      peerCredentials: true,
      nonDumpable: true,
    });
  });

  it('shim (Node and native) run by Claude Code: the peer is the shim, the claimed consumer its ancestor claude', async () => {
    const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
    const shims = [SHIM, ...(fs.existsSync(NATIVE_SHIM) ? [NATIVE_SHIM] : [])];
    for (const shim of shims) expect((await claude.callHelper(shellQuote(shim))).stdout).toBe(`${KEY}\n`);
    claude.close();
    const mine = (await records(shims.length)).filter((r) => r.consumer?.pid === claude.pid);
    expect(mine).toHaveLength(shims.length);
    for (const r of mine) {
      expect(r.consumer).toMatchObject({ name: 'claude', claudeCode: true, invocation: 'api-key-helper' });
      expect(r.consumerIs).toBe('ancestor');
      expect(r.peer!.pid).not.toBe(claude.pid);
      expect(r.peer!.uid).toBe(process.getuid!());
    }
    // The Node shim is node running a script; the native shim is its own executable.
    expect(mine.map((r) => r.peer!.exe)).toEqual([PATH_NODE, ...(shims.length > 1 ? [NATIVE_SHIM] : [])]);
  });

  it('keybroker get: no consumer claimed, the peer is the CLI process', async () => {
    const before = trail().length;
    const got = await d.cli(['get', 'default']);
    expect(got).toMatchObject({ code: 0, stdout: `${KEY}\n` });
    const r = (await records(before + 1)).at(-1)!;
    expect(r.consumer).toBeUndefined();
    expect(r.consumerIs).toBeUndefined();
    expect(r.peer).toMatchObject({ uid: process.getuid!(), exe: NODE });
    expect(r.peer!.pid).not.toBe(process.pid);
  });

  it('keybroker run: the claimed consumer is the peer itself (the process that becomes the command)', async () => {
    const before = trail().length;
    const ran = await d.cli(['run', '-e', 'K=default', '--', '/bin/sh', '-c', 'test -n "$K"']);
    expect(ran.code).toBe(0);
    const r = (await records(before + 1)).at(-1)!;
    expect(r.consumerIs).toBe('peer');
    expect(r.consumer).toMatchObject({ name: 'sh', claudeCode: false });
    expect(r.consumer!.pid).toBe(r.peer!.pid);
    expect(r.peer!.exe).toBe(NODE);
  });

  it('raw socket: the peer is whoever connected; a false consumer claim is flagged, a true one is not', async () => {
    const before = trail().length;
    // A process that is not this one's ancestor: a child of it.
    const bystander = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const claims: ConsumerInfo[] = [
        { pid: bystander.pid!, name: 'claude', claudeCode: true, invocation: 'api-key-helper' },
        // An ancestor, but not the process that had that pid when this one started.
        { pid: process.ppid, start: '1', name: 'claude', claudeCode: true, invocation: 'api-key-helper' },
        { pid: process.ppid, name: 'vitest', claudeCode: false },
      ];
      expect(await raw({ v: 1, op: 'get', profile: 'default' })).toMatchObject({ ok: true });
      for (const consumer of claims)
        expect(await raw({ v: 1, op: 'get', profile: 'default', consumer })).toMatchObject({ ok: true });
    } finally {
      bystander.kill();
    }
    const mine = (await records(before + 4)).slice(before);
    for (const r of mine) expect(r.peer).toEqual({ pid: process.pid, uid: process.getuid!(), exe: NODE });
    expect(mine.map((r) => r.consumerIs)).toEqual([undefined, 'unrelated', 'unrelated', 'ancestor']);

    const table = await d.cli(['audit']);
    const rows = table.stdout.split('\n').filter((l) => l.includes(`node[${process.pid}]`));
    expect(rows).toHaveLength(4);
    expect(rows.map((l) => l.includes('FALSE CLAIM'))).toEqual([false, true, true, false]);
  });
});
