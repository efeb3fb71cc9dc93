// The daemon serving op:// profiles end to end: a real daemon on a real socket (in this process, so
// its op: adapter can be handed the fake 1Password client), the built shim run through `sh -c` as
// Claude Code runs apiKeyHelper, and the built CLI for status.
import { beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { createOnePasswordAdapter } from '../../adapters/onepassword/onepassword-adapter.js';
import { ERROR_CODES, type RefreshReply, type StatusReply } from '../../src/protocol/messages.js';
import { FakeOnePasswordClient } from '../fakes/fake-onepassword-client.js';
import { ROOT, run } from '../helpers/daemon.js';
import { startInProcessDaemon, type InProcessDaemon } from '../helpers/in-process-daemon.js';

const TOKEN = 'ops_eyJFAKE-DAEMON-TOKEN-c7a90d';
const WORK_VALUE = 'sk-ant-api03-FAKE-WORK-1d2c';
const SECOND_VALUE = 'sk-ant-api03-FAKE-SECOND-88ab';
const SIGNIN_VALUE = 'sk-ant-api03-FAKE-SIGNIN-3f0e';

const CONFIG = `
onepassword:
  batchWindow: 5ms
  readsPerHour: 1000
profiles:
  work:
    source: op://Work/Anthropic/credential
  second:
    source: op://Work/Second/API/credential
  signin:
    source: op://Work/Signin/credential
  missing:
    source: op://Work/Nope/credential
`;

describe('daemon serving op:// profiles through the shim', () => {
  const fake = new FakeOnePasswordClient({ credentialText: TOKEN });
  let clientsMade = 0;
  let d: InProcessDaemon;

  beforeAll(async () => {
    fake.setField('Work', 'Anthropic', 'credential', WORK_VALUE);
    fake.setField('Work', 'Second', 'credential', SECOND_VALUE, { section: 'API' });
    fake.setField('Work', 'Signin', 'credential', SIGNIN_VALUE);
    d = await startInProcessDaemon({
      config: CONFIG,
      env: { OP_SERVICE_ACCOUNT_TOKEN: TOKEN, OP_ACCOUNT: '' },
      adapterModules: {
        op: {
          createAdapter: (init) =>
            createOnePasswordAdapter(init, {
              clientFactory: () => {
                clientsMade++;
                return fake;
              },
            }),
        },
      },
    });
  });

  it('prints the value once fetched, then answers from cache without asking 1Password again', async () => {
    const first = await d.shim('work');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`${WORK_VALUE}\n`);
    const calls = fake.calls.resolveAll;
    const second = await d.shim('work');
    expect(second.stdout).toBe(`${WORK_VALUE}\n`);
    expect(fake.calls.resolveAll).toBe(calls);
    expect(clientsMade).toBe(1);
  });

  it('fails a missing item with NOT_FOUND naming it, on one stderr line', async () => {
    const r = await d.shim('missing');
    expect(r.code).toBe(ERROR_CODES.NOT_FOUND);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('keybroker: profile "missing": op://Work/Nope/credential: no item "Nope" in vault "Work"\n');
  });

  it('reports an expired authorisation as AUTH_REQUIRED with what to do, and status says needs sign-in', async () => {
    fake.failAlways('auth-expired');
    try {
      const r = await d.shim('signin');
      expect(r.code).toBe(ERROR_CODES.AUTH_REQUIRED);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('1Password no longer accepts the service account (OP_SERVICE_ACCOUNT_TOKEN)');
      expect(r.stderr).toContain('create a new service account token');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      const status = await d.cli(['status']);
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/signin\s+op:\/\/Work\/Signin\/credential\s+needs sign-in/);
      expect(status.stdout).toMatch(
        /op: service account \(OP_SERVICE_ACCOUNT_TOKEN\): \d+ reads in the last hour .*; needs sign-in/,
      );
    } finally {
      fake.failAlways(undefined);
    }
    // The next read makes a new client and succeeds.
    const again = await d.shim('signin');
    expect(again.stdout).toBe(`${SIGNIN_VALUE}\n`);
    expect(clientsMade).toBe(2);
  });

  it('refreshes every profile with one resolveAll', async () => {
    const before = fake.calls.resolveAll;
    const reply = (await d.request({ v: 1, op: 'refresh', all: true })) as RefreshReply;
    expect(reply.ok).toBe(true);
    expect(reply.refreshed.sort()).toEqual(['second', 'signin', 'work']);
    expect(reply.failed.map((f) => [f.profile, f.error.code])).toEqual([['missing', 'NOT_FOUND']]);
    expect(fake.calls.resolveAll).toBe(before + 1);
    expect(fake.batches.at(-1)!.sort()).toEqual([
      'op://Work/Anthropic/credential',
      'op://Work/Nope/credential',
      'op://Work/Second/API/credential',
      'op://Work/Signin/credential',
    ]);
    expect((await d.shim('second')).stdout).toBe(`${SECOND_VALUE}\n`);
  });

  it('shows the read count in status, and never a token or value in status or the log', async () => {
    const reply = (await d.request({ v: 1, op: 'status' })) as StatusReply;
    const op = reply.sources.find((s) => s.kind === 'op');
    expect(op?.notes).toEqual([
      `service account (OP_SERVICE_ACCOUNT_TOKEN): ${fake.calls.references} reads in the last hour (limit 1000; background refreshes stop at 500)`,
    ]);
    const text = JSON.stringify(reply) + (await d.cli(['status'])).stdout + d.log();
    expect(d.log()).toContain('1Password call failed');
    for (const secret of [TOKEN, WORK_VALUE, SECOND_VALUE, SIGNIN_VALUE]) expect(text).not.toContain(secret);
  });
});

describe('daemon with op:// profiles and no 1Password credentials', () => {
  let d: InProcessDaemon;
  const fake = new FakeOnePasswordClient();

  beforeAll(async () => {
    d = await startInProcessDaemon({
      config: 'profiles:\n  work:\n    source: op://Work/Anthropic/credential\n',
      env: { OP_SERVICE_ACCOUNT_TOKEN: '', OP_ACCOUNT: '' },
      adapterModules: {
        op: { createAdapter: (init) => createOnePasswordAdapter(init, { clientFactory: () => fake }) },
      },
    });
  });

  it('fails at once, saying how to authenticate', async () => {
    const r = await d.shim('work');
    expect(r.code).toBe(ERROR_CODES.AUTH_REQUIRED);
    expect(r.stderr).toContain('no 1Password credentials — set OP_SERVICE_ACCOUNT_TOKEN');
    expect(r.stderr).toContain('OP_ACCOUNT');
    expect(r.ms).toBeLessThan(5000);
    expect(fake.calls.resolveAll).toBe(0);
    const status = await d.cli(['status']);
    expect(status.stdout).toContain('op: no credentials for profile work');
  });
});

describe('the op: adapter module', () => {
  it('loads the SDK (its WASM core) on first parse, not when constructed', async () => {
    const script = `
      import { createRequire } from 'node:module';
      const req = createRequire(${JSON.stringify(path.join(ROOT, 'x.js'))});
      const sdkLoaded = () => Object.keys(req.cache).some((k) => k.includes('@1password'));
      const { createAdapter } = await import(${JSON.stringify(path.join(ROOT, 'dist/adapters/onepassword/onepassword-adapter.js'))});
      const adapter = createAdapter({ settings: { account: 'x' }, env: {}, log: {} });
      const constructed = sdkLoaded();
      await adapter.parse('op://Vault/Item/field', { overrides: undefined, profile: 'p' });
      process.stdout.write(JSON.stringify({ constructed, parsed: sdkLoaded() }));
    `;
    const r = await run(process.execPath, ['--input-type=module', '-e', script]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ constructed: false, parsed: true });
  });
});
