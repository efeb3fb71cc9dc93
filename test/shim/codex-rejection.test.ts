// The 401 path for Codex, end to end: a stand-in Codex process runs the real shim as a model
// provider's auth command (directly, with the --refresh-interval-ms that `setup codex` writes); a
// repeat run soon after the last means the key it holds was rejected. The same process's agent
// running the shim through its exec_command tool never does, even with the very same arguments.
// Run against both shims: they follow one table of rules (src/shim/consumer.ts, AGENT_RULES).
//
// One daemon serves the file; each test takes a profile of its own (its own key file, fetch count,
// consumer records, forced-fetch budget and log lines), so no test sees another's state.
import { beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { rotatingProfiles, SHIMS, type RotatingProfile } from '../helpers/daemon.js';
import { startFakeCodex, type FakeCodex } from '../helpers/fake-claude.js';

/** A profile per test (more than the file has), on one daemon. */
const profiles = rotatingProfiles(12);
const d = profiles.daemon;

describe.each(SHIMS)('$name shim', ({ path: shim, skip }) => {
  describe.skipIf(skip !== undefined)(skip ?? 'with a real daemon', () => {
    /** This test's profile. */
    let p: RotatingProfile;
    let work: string;
    let codex: FakeCodex;
    /** What `keybroker setup codex` writes: the shim, the refresh interval, the profile. */
    let auth: string[];
    const ok = (value: string): object => ({ code: 0, stdout: `${value}\n`, stderr: '' });

    beforeEach(() => {
      p = profiles.take('sk-old');
      work = p.name;
      auth = [shim, '--refresh-interval-ms', '300000', work];
      codex = startFakeCodex(d.dir, d.env);
    });

    it('a Codex whose key got a 401 gets the rotated key when it runs its auth command again', async () => {
      expect(await codex.runAuth(auth)).toEqual(ok('sk-old'));
      p.setKey('sk-new');
      expect(await codex.runAuth(auth)).toEqual(ok('sk-new'));
      expect(p.fetches()).toBe(2);
      expect(p.rejections()).toBe(1);
    });

    it('a revoked key: the unchanged key once more, then KEY_REJECTED instead of a retry loop', async () => {
      expect(await codex.runAuth(auth)).toEqual(ok('sk-old'));
      expect(await codex.runAuth(auth)).toEqual(ok('sk-old'));
      const third = await codex.runAuth(auth);
      expect(third.code).toBe(ERROR_CODES.KEY_REJECTED);
      expect(third.stdout).toBe('');
      expect(third.stderr).toMatch(/^keybroker: [^\n]+\n$/);
      // The first fetch, and one per suspected rejection: bounded, whatever Codex does next.
      expect(p.fetches()).toBeLessThanOrEqual(3);
    });

    it('the agent running the shim through exec_command, even with the auth command’s arguments, gets ordinary reads', async () => {
      expect(await codex.runAuth(auth)).toEqual(ok('sk-old'));
      for (let i = 0; i < 3; i++) expect(await codex.tool(auth.join(' '))).toEqual(ok('sk-old'));
      for (let i = 0; i < 2; i++) expect(await codex.tool(`${shim} ${work}`)).toEqual(ok('sk-old'));
      expect(p.fetches()).toBe(1);
      expect(p.rejections()).toBe(0);
      // The auth command's next run (here soon after its first, as after a 401) is still the one repeat.
      expect(await codex.runAuth(auth)).toEqual(ok('sk-old'));
      expect(p.rejections()).toBe(1);
    });

    it('an auth command written without --refresh-interval-ms gets ordinary reads', async () => {
      for (let i = 0; i < 3; i++) expect(await codex.runAuth([shim, work])).toEqual(ok('sk-old'));
      expect(p.fetches()).toBe(1);
    });
  });
});
