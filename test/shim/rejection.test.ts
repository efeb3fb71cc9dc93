// The 401 path end to end: a stand-in Claude Code process calls the real shim through `sh -c`;
// a repeat apiKeyHelper call from it soon after the last means the key it holds was rejected.
// The same process's agent running the shim through its Bash tool, or a sibling helper
// (--format), never does. Environments as measured on Claude Code 2.1.330 (fake-claude.mjs).
// Run against both shims: the native fast path must leave the 401 path exactly as it is.
//
// One daemon serves the file; each test takes a profile of its own (its own key file, fetch count,
// consumer records, forced-fetch budget and log lines), so no test sees another's state.
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { rotatingProfiles, SHIMS, shellQuote, type RotatingProfile } from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude, UNMARKED_CLAUDE_ENV } from '../helpers/fake-claude.js';
import type { StatusReply } from '../../src/protocol/messages.js';

/** A profile per test (more than the file has), on one daemon. */
const profiles = rotatingProfiles(32);
const d = profiles.daemon;

describe.each(SHIMS)('$name shim', ({ path: shim, skip }) => {
  describe.skipIf(skip !== undefined)(skip ?? 'with a real daemon', () => {
    /** This test's profile. */
    let p: RotatingProfile;
    let work: string;
    const helper = (args = ''): string => `${shellQuote(shim)} ${args}${work}`;

    beforeEach(() => {
      p = profiles.take('sk-old');
      work = p.name;
    });

    describe('a Claude Code session whose key was rejected', () => {
      it('gets the rotated key at once when it calls again', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
        expect(await claude.callHelper(helper())).toEqual({
          code: 0,
          stdout: 'sk-old\n',
          stderr: '',
        });
        p.setKey('sk-new');
        // Claude Code got a 401 for sk-old and calls the helper again at once.
        expect(await claude.callHelper(helper())).toEqual({
          code: 0,
          stdout: 'sk-new\n',
          stderr: '',
        });
        expect(p.fetches()).toBe(2);
        expect(p.rejections()).toBe(1);
      });

      it('gets the unchanged key once more, then one clear error instead of a silent retry loop', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
        expect((await claude.callHelper(helper())).stdout).toBe('sk-old\n');
        expect((await claude.callHelper(helper())).stdout).toBe('sk-old\n');
        const third = await claude.callHelper(helper());
        expect(third.code).toBe(7);
        expect(third.stdout).toBe('');
        expect(third.stderr).toBe(
          `keybroker: profile "${work}": the key was rejected and exec:echo … still returns the same value — rotate it at the source, then run: keybroker refresh ${work}\n`,
        );
        // After rotating and refreshing, the session recovers.
        p.setKey('sk-fixed');
        expect(await d.cli(['refresh', work])).toMatchObject({ code: 0, stdout: `refreshed ${work}\n` });
        expect((await claude.callHelper(helper())).stdout).toBe('sk-fixed\n');
      });

      it('is seen as one consumer, named claude, in status', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
        await claude.callHelper(helper());
        const status = (await d.request({ v: 1, op: 'status' })) as StatusReply;
        expect(status.profiles.find((p) => p.name === work)!.consumers).toBe(1);
      });
    });

    // Claude Code drops its cached key and re-runs apiKeyHelper when one of its settings files
    // changes: it writes the theme into ~/.claude/settings.json during a new user's first session,
    // and a permission rule into .claude/settings.local.json (measured on 2.1.332; see
    // test/integration/real-claude-code-interactive.test.ts). That call is no 401.
    describe('a Claude Code session whose settings changed', () => {
      const later = (file: string, seconds: number): void => {
        const t = new Date(Date.now() + seconds * 1000);
        fs.utimesSync(file, t, t);
      };

      it.each([
        ['its user settings (~/.claude/settings.json)', ['.claude', 'settings.json']],
        ['its project’s local settings (.claude/settings.local.json)', ['project', '.claude', 'settings.local.json']],
      ])('%s: the helper’s next call is an ordinary read, not a refetch', async (_what, changedPath) => {
        // A HOME of its own: the user settings it changes are this test's alone.
        const home = path.join(d.dir, `${work}-home`);
        const project = path.join(home, 'project');
        fs.mkdirSync(path.join(home, '.claude'), { recursive: true });
        fs.mkdirSync(path.join(project, '.claude'), { recursive: true });
        const settings = `{"apiKeyHelper": "${shim} ${work}"}\n`;
        fs.writeFileSync(path.join(home, '.claude', 'settings.json'), settings);
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV, HOME: home }, 'claude', project);
        expect((await claude.callHelper(`${shim} ${work}`)).stdout).toBe('sk-old\n');
        const changed = path.join(home, ...changedPath);
        fs.writeFileSync(changed, settings.replace('}', ', "theme": "auto"}'));
        later(changed, 2);
        expect(await claude.callHelper(`${shim} ${work}`)).toEqual({ code: 0, stdout: 'sk-old\n', stderr: '' });
        expect(p.fetches()).toBe(1);
        expect(p.rejections()).toBe(0);
        // A repeat with the settings as they were at the last call is judged as before.
        p.setKey('sk-new');
        expect((await claude.callHelper(`${shim} ${work}`)).stdout).toBe('sk-new\n');
        expect(p.fetches()).toBe(2);
      });
    });

    describe('callers that are not Claude Code', () => {
      it('a script calling the shim in a loop gets ordinary cached reads', async () => {
        const script = startFakeClaude(d.dir, d.env, 'python3');
        // Three calls: a Claude Code session's second would refetch, its third would be refused.
        for (let i = 0; i < 3; i++) expect((await script.callHelper(helper())).stdout).toBe('sk-old\n');
        expect(p.fetches()).toBe(1);
      });

      it('a process named claude without Claude Code’s environment gets ordinary reads', async () => {
        const claude = startFakeClaude(d.dir, d.env);
        for (let i = 0; i < 3; i++) expect((await claude.callHelper(helper())).stdout).toBe('sk-old\n');
        expect(p.fetches()).toBe(1);
      });

      it('Claude Code’s environment without a claude process (e.g. a tool) gets ordinary reads', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV }, 'node-tool');
        for (let i = 0; i < 3; i++) expect((await claude.callHelper(helper())).stdout).toBe('sk-old\n');
        expect(p.fetches()).toBe(1);
      });
    });

    describe('the agent running the shim through its Bash tool', () => {
      it('gets ordinary reads however often, and the session’s helper calls are unaffected', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
        expect(await claude.callHelper(helper())).toEqual({
          code: 0,
          stdout: 'sk-old\n',
          stderr: '',
        });
        // A user asks "is my key set up?" and the agent runs the shim, twice.
        expect(await claude.bashTool(helper())).toEqual({ code: 0, stdout: 'sk-old\n', stderr: '' });
        expect(await claude.bashTool(helper())).toEqual({ code: 0, stdout: 'sk-old\n', stderr: '' });
        expect(p.fetches()).toBe(1);
        // The next helper call (here soon after the first, as after a 401) still gets a key.
        expect(await claude.callHelper(helper())).toEqual({
          code: 0,
          stdout: 'sk-old\n',
          stderr: '',
        });
        expect(p.rejections()).toBe(1);
      });

      it('does not make the session’s first helper call look like a repeat', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
        for (let i = 0; i < 3; i++) expect((await claude.bashTool(helper())).code).toBe(0);
        expect((await claude.callHelper(helper())).stdout).toBe('sk-old\n');
        expect(p.fetches()).toBe(1);
        expect(p.rejections()).toBe(0);
      });
    });

    describe('sibling helpers (--format) run by the Claude Code process', () => {
      it('never count as repeats', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
        for (let i = 0; i < 3; i++) {
          expect(await claude.callHelper(helper('--format headers '))).toEqual({
            code: 0,
            stdout: '{"Authorization":"Bearer sk-old"}\n',
            stderr: '',
          });
        }
        expect(p.fetches()).toBe(1);
      });
    });

    describe('a Claude Code process that shows neither marker (an unknown release)', () => {
      it('gets ordinary reads, and status says repeat detection is off for it', async () => {
        const claude = startFakeClaude(d.dir, { ...d.env, ...UNMARKED_CLAUDE_ENV });
        for (let i = 0; i < 3; i++) expect((await claude.callHelper(helper())).stdout).toBe('sk-old\n');
        expect(p.fetches()).toBe(1);
        const json = (await d.request({ v: 1, op: 'status' })) as StatusReply;
        expect(json.profiles.find((p) => p.name === work)).toMatchObject({ consumers: 1, unmarkedClaudeConsumers: 1 });
        const text = await d.cli(['status']);
        expect(text.code).toBe(0);
        expect(text.stdout).toMatch(
          new RegExp(`^note +profile "${work}": 1 Claude Code consumer without a known helper marker`, 'm'),
        );
        const doctor = JSON.parse((await d.cli(['doctor', '--no-fetch', '--json'])).stdout) as
          { checks?: Array<{ id: string; status: string }> } | Array<{ id: string; status: string }>;
        const checks = Array.isArray(doctor) ? doctor : (doctor.checks ?? []);
        expect(checks.find((c) => c.id === `consumers:${work}`)).toMatchObject({ status: 'warn' });
      });
    });
  });
});
