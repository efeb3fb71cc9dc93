// A broken config as each reader meets it: Claude Code gets one short line from either shim, a
// person gets one problem per line (config check, doctor, the daemon log), and after a refused
// reload the errors are those of the file as it is now.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_CONFIG_ERROR_LINE } from '../../src/config/load.js';
import type { StatusReply } from '../../src/protocol/messages.js';
import { privateTempDir, sharedDaemon, SHIMS, startDaemon, waitFor, type StartOptions } from '../helpers/daemon.js';

/** Six problems, each of them long: together far more than Claude Code's one line can hold. */
const SIX_PROBLEMS = [
  'profiles:',
  '  work:',
  '    source: env:KB_CFG_WORK',
  '    ttl: five-minutes-or-so-whatever-suits',
  '    maxStale: an-hour-or-thereabouts-if-possible',
  '    timeout: eight-seconds-would-be-about-right',
  '    sauce: env:KB_CFG_TYPO_IN_THE_KEY_NAME_HERE',
  '  other:',
  '    source: zz:not-a-source-kind-anyone-knows-about',
  '  third:',
  '    source: env:KB_CFG_THIRD',
  '    retries: 3',
  '',
].join('\n');

/** A daemon whose config sits at a long path (the message must fit whatever the path). */
function brokenConfig(config: string): StartOptions {
  const dir = privateTempDir('kb-cfgerr-');
  const deep = path.join(dir, 'a-rather-long-directory-name-for-the-config'.repeat(3));
  fs.mkdirSync(deep, { mode: 0o700 });
  const configPath = path.join(deep, 'keybroker-config-with-a-long-name.yaml');
  return { config, dir, env: { KEYBROKER_CONFIG: configPath } };
}

/**
 * The six-problem daemon the tests that only read it share (~0.5 s of CPU per daemon): none of
 * them changes its config or its state.
 */
const six = sharedDaemon(() => brokenConfig(SIX_PROBLEMS));

describe('a broken config, as Claude Code sees it', () => {
  it('both shims print one line of at most 300 characters naming the count, the file and config check', async () => {
    const d = six;
    const outputs: string[] = [];
    for (const shim of SHIMS.filter((s) => !s.skip)) {
      const r = await d.shim('work', {}, shim.path);
      expect(r.code, shim.name).toBe(8);
      expect(r.stdout, shim.name).toBe('');
      const lines = r.stderr.split('\n').filter(Boolean);
      expect(lines, shim.name).toHaveLength(1);
      expect(Array.from(lines[0]!).length, shim.name).toBeLessThanOrEqual(MAX_CONFIG_ERROR_LINE);
      expect(lines[0], shim.name).toMatch(
        /^keybroker: 6 problems in \S+; first: line \d+: .* — run: keybroker config check$/,
      );
      outputs.push(r.stderr);
    }
    // The two shims agree, byte for byte.
    expect(new Set(outputs).size).toBe(1);
  });

  it('the daemon log holds each problem as its own record, with its line', async () => {
    const records = six
      .log()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; line?: number; path?: string });
    const problems = records.filter((r) => r.msg.startsWith('config: '));
    expect(problems).toHaveLength(6);
    for (const p of problems) expect(p.msg).not.toContain('\n');
    expect(problems.map((p) => p.line)).toEqual([4, 5, 6, 7, 9, 12]);
  });

  it('after a refused reload, requests get the errors of the file as it is now', async () => {
    const d = await startDaemon(brokenConfig('profiles:\n  work:\n    sauce: env:HOME\n'));
    expect((await d.shim('work')).stderr).toMatch(/^keybroker: 2 problems in \S+; first: line 2: profiles\.work/);
    // Fixed where it was, broken further down: the error moved to line 6.
    d.writeConfig('profiles:\n  other:\n    source: env:HOME\n  work:\n    source: env:HOME\n    ttl: 5x\n');
    d.signal('SIGHUP');
    await waitFor(
      async () => ((await d.request({ v: 1, op: 'status' })) as StatusReply).daemon.reloads === 1,
      5_000,
      'the reload',
    );
    for (const shim of SHIMS.filter((s) => !s.skip)) {
      const r = await d.shim('work', {}, shim.path);
      expect(r.code, shim.name).toBe(8);
      expect(r.stderr, shim.name).toMatch(/^keybroker: 1 problem in \S+: line 6: profiles\.work\.ttl: /);
    }
    const status = await d.cli(['status']);
    expect(status.stdout).toContain(`${d.configPath}:6: profiles.work.ttl`);
    expect(status.stdout).not.toContain('sauce');
  });
});

describe('a broken config, as a person sees it', () => {
  it('doctor shows one problem per line, with the fix once', async () => {
    const d = six;
    const checks = JSON.parse((await d.cli(['doctor', '--json', '--no-fetch'])).stdout) as Array<{
      id: string;
      status: string;
      message: string;
      fix?: string;
    }>;
    const config = checks.filter((c) => c.id === 'config');
    expect(config).toHaveLength(6);
    expect(config.every((c) => c.status === 'fail' && !c.message.includes('\n'))).toBe(true);
    expect(config.filter((c) => c.fix !== undefined)).toHaveLength(1);
  });

  it('config check prints one problem per line, and --json gives them as data', async () => {
    const d = six;
    const r = await d.cli(['config', 'check']);
    expect(r.code).toBe(8);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(7); // six problems and the count
    expect(lines.slice(0, 6).every((l) => l.startsWith(`${d.configPath}:`))).toBe(true);
    const json = await d.cli(['config', 'check', '--json']);
    expect(json.code).toBe(8);
    const data = JSON.parse(json.stdout) as { ok: boolean; problems: Array<{ line: number; kind: string }> };
    expect(data.ok).toBe(false);
    expect(data.problems.map((p) => p.line)).toEqual([4, 5, 6, 7, 9, 12]);
  });
});
