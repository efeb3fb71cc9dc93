// The real Claude Code CLI (npm @anthropic-ai/claude-code, installed on first use by
// test/helpers/pinned-cli.ts at the version pinned there) against the fake Messages API, with its
// apiKeyHelper pointing at the built shim and a real daemon: the 401 path and the agent's Bash
// tool running the shim, in Claude Code's own process tree and environment. `claude -p` with HOME
// in a temporary directory; every run is bounded in time. Where it cannot be installed (no
// registry), these tests fail rather than skip.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeMessagesApi } from '../fakes/fake-messages-api.js';
import { claudeCode, claudeCodeEnv, CLI_INSTALL_TIMEOUT_MS } from '../helpers/pinned-cli.js';
import { cleanUp } from '../helpers/cleanup.js';
import { run, SHIM, startCountingDaemon, waitFor, type CountingDaemon } from '../helpers/daemon.js';
import type { DoctorCheck } from '../../src/integration/doctor.js';
import { exitCodeFor, type StatusReply } from '../../src/protocol/messages.js';

let CLAUDE: string;
beforeAll(async () => {
  CLAUDE = await claudeCode();
}, CLI_INSTALL_TIMEOUT_MS + 60_000);

const RUN_TIMEOUT_MS = 60_000;

let d: CountingDaemon;
let api: FakeMessagesApi;
let project: string;

beforeEach(async () => {
  api = await FakeMessagesApi.start();
  cleanUp(() => api.close());
  d = await startCountingDaemon();
  project = path.join(d.dir, 'project');
  fs.mkdirSync(project);
  fs.mkdirSync(path.join(d.dir, 'tmp'));
  fs.mkdirSync(path.join(d.dir, '.claude'));
  fs.writeFileSync(path.join(d.dir, '.claude', 'settings.json'), JSON.stringify({ apiKeyHelper: `${SHIM} work` }));
});

/** `claude -p PROMPT` in the project, HOME the test directory, talking only to the fake API. */
function claude(prompt: string, args: string[] = []): ReturnType<typeof run> {
  const env = claudeCodeEnv(d.env, api.url, path.join(d.dir, 'tmp'));
  return run(CLAUDE, ['-p', prompt, ...args], { env, cwd: project, timeoutMs: RUN_TIMEOUT_MS });
}

describe('the real Claude Code CLI with keybroker as its apiKeyHelper', () => {
  it(
    'gets the rotated key at once after a 401, through the helper',
    async () => {
      d.setKey('sk-old-rotated-away');
      expect((await d.shim('work')).stdout).toBe('sk-old-rotated-away\n');
      d.setKey('sk-new-after-rotation');
      api.rejectedKeys.add('sk-old-rotated-away');
      const r = await claude('say hi');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('hello from the fake Messages API');
      // Claude Code sent the cached key, got a 401, called the helper again, and retried.
      expect(api.keys()).toEqual(['sk-old-rotated-away', 'sk-new-after-rotation']);
      expect(api.requests.map((q) => q.bearer)).toEqual(api.keys());
      expect(d.fetches()).toBe(2);
      expect(d.log()).toContain('its key was probably rejected');
    },
    RUN_TIMEOUT_MS + 10_000,
  );

  it(
    'lets the agent run the shim twice through its Bash tool, and the next helper call still works',
    async () => {
      d.setKey('sk-agent-session-key');
      const command = `${SHIM} work; echo "exit=$?"; ${SHIM} work; echo "exit=$?"`;
      api.answer = (req) =>
        req.toolResults.length === 0
          ? [
              {
                type: 'tool_use',
                id: 'toolu_check_key',
                name: 'Bash',
                input: { command, description: 'Check the key is set up' },
              },
            ]
          : [{ type: 'text', text: 'your key works' }];
      // The request carrying the tool's output gets one 401, so Claude Code calls its helper again.
      let rejected = false;
      api.rejectIf = (req) => req.toolResults.length > 0 && !rejected && (rejected = true);
      const r = await claude('is my key set up?', ['--allowedTools', 'Bash']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('your key works');
      const results = api.requests.flatMap((q) => q.toolResults);
      expect(results[0]).toBe('sk-agent-session-key\nexit=0\nsk-agent-session-key\nexit=0');
      expect(api.requests.map((q) => q.status)).toEqual([200, 401, 200]);
      expect(new Set(api.keys())).toEqual(new Set(['sk-agent-session-key']));
      // The helper's call after the 401 was the one repeat: a refetch, then the same key once more.
      expect(d.log().match(/its key was probably rejected/g)).toHaveLength(1);
      expect(d.fetches()).toBe(2);
    },
    RUN_TIMEOUT_MS + 10_000,
  );

  it(
    'after Claude Code is refused a rejected key, status and doctor say so until a rotation brings another',
    async () => {
      d.setKey('sk-revoked-at-the-console');
      api.rejectedKeys.add('sk-revoked-at-the-console');
      const started = Date.now();
      // 401, the helper again (refetched: same value, served once more), 401, the helper again:
      // refused with KEY_REJECTED. What Claude Code does next is its own business; the test
      // asks keybroker.
      await claude('say hi');
      expect(api.requests.filter((q) => q.key === 'sk-revoked-at-the-console').map((q) => q.status)).toEqual([
        401, 401,
      ]);
      const status = async (): Promise<StatusReply> => {
        const r = await d.cli(['status', '--json']);
        expect(r.code).toBe(0);
        return JSON.parse(r.stdout) as StatusReply;
      };
      const doctor = async (...args: string[]): Promise<{ code: number | null; work: DoctorCheck | undefined }> => {
        const r = await d.cli(['doctor', '--json', ...args]);
        const checks = JSON.parse(r.stdout) as DoctorCheck[];
        return { code: r.code, work: checks.find((c) => c.id === 'profile:work') };
      };

      const rejected = (await status()).profiles[0]!.rejected;
      expect(rejected).toMatchObject({ consumer: { name: 'claude' } });
      expect(rejected!.atMs).toBeGreaterThanOrEqual(started);
      expect(rejected!.atMs).toBeLessThanOrEqual(Date.now());
      expect(rejected!.requests).toBeGreaterThanOrEqual(1);
      const human = await d.cli(['status']);
      expect(human.stdout).toMatch(/^work +exec:echo … +rejected /m);
      expect(human.stdout).not.toContain('sk-revoked-at-the-console');
      const before = await doctor();
      expect(before.code).toBe(1);
      expect(before.work).toMatchObject({ status: 'fail', fix: expect.stringContaining('keybroker refresh work') });
      expect(JSON.stringify(before)).not.toContain('sk-revoked-at-the-console');
      expect(await doctor('--no-fetch')).toMatchObject({ code: 1, work: { status: 'fail' } });

      // The same value again is no cure …
      expect((await d.cli(['refresh', 'work'])).code).toBe(0);
      expect((await status()).profiles[0]!.rejected).not.toBeNull();
      // … a rotated one is.
      d.setKey('sk-rotated-at-the-console');
      // The two rejection checks and the refresh above spent the profile's forced-fetch burst (3,
      // then one every 10s): this refresh is refused (RATE_LIMITED) until the limit allows it.
      await waitFor(
        async () => {
          const r = await d.cli(['refresh', 'work']);
          if (r.code !== exitCodeFor('RATE_LIMITED')) expect(r.code).toBe(0);
          return r.code === 0;
        },
        15_000,
        'a refresh the forced-fetch limit allows',
      );
      expect((await status()).profiles[0]!.rejected).toBeNull();
      const after = await doctor();
      expect(after.code).toBe(0);
      expect(after.work).toMatchObject({ status: 'ok' });
    },
    RUN_TIMEOUT_MS + 30_000,
  );

  // A Claude Code started from another one's Bash tool inherits that one's agent markers
  // (CLAUDECODE=1, CLAUDE_PID=<the outer pid>, …) and marks its own helper AI_AGENT=…_harness.
  // Its helper's repeat after a 401 must count as one, or it would be served the rejected key.
  it(
    "a Claude Code run from another one's Bash tool gets the rotated key after a 401, through its own helper",
    async () => {
      d.setKey('sk-nested-before');
      expect((await d.shim('work')).stdout).toBe('sk-nested-before\n');
      const inner = (req: { prompt: string }): boolean => req.prompt.includes('the inner session');
      api.answer = (req) =>
        inner(req)
          ? [{ type: 'text', text: 'inner session answered' }]
          : req.toolResults.length === 0
            ? [
                {
                  type: 'tool_use',
                  id: 'toolu_nested',
                  name: 'Bash',
                  input: {
                    command: `${CLAUDE} -p "the inner session"; echo "inner-exit=$?"`,
                    description: 'Run Claude Code',
                  },
                },
              ]
            : [{ type: 'text', text: 'outer session done' }];
      // The key is rotated the moment the inner session first asks: its cached key gets a 401.
      api.rejectIf = (req) => {
        if (!inner(req) || api.rejectedKeys.has('sk-nested-before')) return false;
        d.setKey('sk-nested-after');
        api.rejectedKeys.add('sk-nested-before');
        return true;
      };
      const r = await claude('run claude', ['--allowedTools', 'Bash']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('outer session done');
      const results = api.requests.flatMap((q) => q.toolResults);
      expect(results[0]).toContain('inner session answered');
      expect(results[0]).toContain('inner-exit=0');
      const innerRequests = api.requests.filter(inner);
      expect(innerRequests.map((q) => [q.status, q.key])).toEqual([
        [401, 'sk-nested-before'],
        [200, 'sk-nested-after'],
      ]);
    },
    RUN_TIMEOUT_MS + 10_000,
  );
});
