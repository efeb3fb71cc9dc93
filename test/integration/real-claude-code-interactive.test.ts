// The real Claude Code CLI (test/helpers/claude-code.ts) in an interactive session, under tmux, in
// a fresh HOME: a new user's first session, with its first-run dialogs (the theme, the security
// notes, the workspace trust dialog for the project), its apiKeyHelper pointing at the built shim
// and a real daemon, against the fake Messages API. Where Claude Code or tmux cannot run, this
// fails rather than skips.
//
// Measured on 2.1.332: Claude Code runs the helper once at start-up, while its dialogs show; the
// theme picked in the first one is written to ~/.claude/settings.json; a settings file that
// changes makes Claude Code drop its cached key; so its first request runs the helper again — a
// repeat from the same process within its helper TTL, with no 401 (docs/claude-code.md).
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import { FakeMessagesApi } from '../fakes/fake-messages-api.js';
import { claudeCode, claudeCodeEnv, CLI_INSTALL_TIMEOUT_MS } from '../helpers/pinned-cli.js';
import { cleanUp } from '../helpers/cleanup.js';
import { SHIM, startCountingDaemon, waitFor, type CountingDaemon } from '../helpers/daemon.js';
import { startTmux } from '../helpers/tmux.js';

let CLAUDE: string;
beforeAll(async () => {
  CLAUDE = await claudeCode();
}, CLI_INSTALL_TIMEOUT_MS + 60_000);

let d: CountingDaemon;
let api: FakeMessagesApi;

beforeEach(async () => {
  api = await FakeMessagesApi.start();
  cleanUp(() => api.close());
  d = await startCountingDaemon();
  d.setKey('sk-first-session-key');
});

/** The get records of the audit trail (the daemon appends them every 250 ms). */
async function helperGets(count: number): Promise<AuditRecord[]> {
  const file = path.join(d.dir, 'state', 'keybroker', 'audit.jsonl');
  const gets = (): AuditRecord[] =>
    fs.existsSync(file)
      ? fs
          .readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => l.endsWith('}')) // a line being appended is not read yet
          .map((l) => JSON.parse(l) as AuditRecord)
          .filter((r) => r.op === 'get' && r.consumer?.invocation === 'api-key-helper')
      : [];
  await waitFor(() => gets().length >= count, 15_000, `${count} helper gets in the audit trail`);
  return gets();
}

describe('the real Claude Code, interactive, a new user’s first session', () => {
  it('runs its helper again after the first-run dialogs, and keybroker serves it from cache: no refetch without a 401', async () => {
    const project = path.join(d.dir, 'project');
    fs.mkdirSync(project);
    fs.mkdirSync(path.join(d.dir, 'tmp'));
    fs.mkdirSync(path.join(d.dir, '.claude'));
    fs.writeFileSync(path.join(d.dir, '.claude', 'settings.json'), JSON.stringify({ apiKeyHelper: `${SHIM} work` }));
    const env = claudeCodeEnv(d.env, api.url, path.join(d.dir, 'tmp'));
    const session = startTmux({ dir: d.dir, cwd: project, env, command: [CLAUDE] });

    await session.waitFor(/Choose the text style/, 'the theme dialog');
    // Claude Code runs the helper once its first dialog shows; a person reads it before choosing.
    // (Choosing within a fraction of a second writes the theme before that call, and Claude Code
    // notices the change only after it: docs/claude-code.md says what that costs.)
    await helperGets(1);
    await session.press('Enter', /Press Enter to continue/, 'the security notes');
    await session.press('Enter', /Yes, I trust this folder/, 'the workspace trust dialog');
    // The dialog may be drawn anew once Claude Code notices the theme it just wrote, with its
    // choice back on "No, exit": the choice must stay on yes for a while before Enter.
    const onYes = /^[ \u00a0]*❯[ \u00a0]+(\d\.[ \u00a0]+)?Yes, I trust this folder/mu;
    for (let tries = 0; ; tries++) {
      if (!onYes.test(session.screen())) await session.press('Down', onYes, 'the choice to move to yes');
      await sleep(2_000);
      if (onYes.test(session.screen())) break;
      if (tries === 5) throw new Error('the trust dialog’s choice did not stay on yes');
    }
    session.keys('Enter');
    await session.waitFor(/^❯\s*$/mu, 'the prompt');
    session.keys('say hi', true);
    await session.waitFor(/❯\s+say hi/u, 'the typed prompt');
    session.keys('Enter');
    await session.waitFor(/hello from the fake Messages API/, 'the answer');

    // The helper ran twice: at start-up, and again for the first request.
    const gets = await helperGets(2);
    expect(gets).toHaveLength(2);
    expect(api.requests.map((q) => [q.status, q.key])).toEqual([[200, 'sk-first-session-key']]);
    // No 401 came between them: the second is an ordinary read, not a refetch.
    expect(gets.map((g) => g.outcome)).toEqual(['fetched', 'hit']);
    expect(gets[1]!.rejected).toBeUndefined();
    expect(d.fetches()).toBe(1);
    expect(d.log()).not.toContain('its key was probably rejected');
  }, 120_000);
});
