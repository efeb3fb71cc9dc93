// A process outside a Claude Code session that claims to be that session's apiKeyHelper — Claude
// Code's pid and start time, the harness marker's invocation, no agent marker — and repeats; the
// same for a Codex process's model provider auth command (agent "codex"). Before
// the daemon checked claims with the kernel, its "strikes" made the session's real helper exit 7
// (KEY_REJECTED) on its next call. Now a claim whose pid is neither the peer nor one of its
// ancestors changes nothing the real helper is judged by: its strike affects only its own request.
// What a process inside the session can still do is in docs/security.md.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import { ERROR_CODES, type ConsumerInfo } from '../../src/protocol/messages.js';
import { run, SHIM, sharedDaemon, waitFor, type DaemonHandle, type RunResult, shellQuote } from '../helpers/daemon.js';
import { CLAUDE_ENV, startFakeClaude, startFakeCodex } from '../helpers/fake-claude.js';
import { HARDENING_ADDON } from '../helpers/install-copy.js';

const KEY = 'sk-forged-claim-40e9';
const addonMissing = fs.existsSync(HARDENING_ADDON)
  ? undefined
  : `${HARDENING_ADDON} was not built (no C compiler when npm run build ran)`;
if (addonMissing) console.log(`skipping the forged helper claim test: ${addonMissing}`);

// The attacker: one request line per claim on a raw socket, each on its own connection, printing
// each reply's error code (or "ok") on a line.
const ATTACKER = `
const net = require('node:net');
const [socketPath, profile, claim, times] = process.argv.slice(1);
const request = JSON.stringify({ v: 1, op: 'get', profile, consumer: JSON.parse(claim) }) + '\\n';
(async () => {
  for (let i = 0; i < Number(times); i++) {
    const reply = await new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      let text = '';
      s.on('data', (c) => (text += c));
      s.on('end', () => resolve(JSON.parse(text)));
      s.on('error', reject);
      s.end(request);
    });
    console.log(reply.ok ? 'ok' : reply.error.code);
  }
})();
`;

/** Field 22 of /proc/PID/stat: what the shim sends as the consumer's start. */
function startTime(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

/** An agent CLI stand-in: its pid, and one run of its key command (the shim, as the agent runs it). */
interface Agent {
  pid: number;
  callKeyCommand(): Promise<Omit<RunResult, 'ms'>>;
}

/**
 * The claim the attacker makes: the agent's pid and start time, its key command's invocation.
 * Each agent's key command asks for a profile of its own: the daemon is shared.
 */
const AGENTS: Array<{
  name: string;
  profile: string;
  start(d: DaemonHandle): Agent;
  claim(pid: number): ConsumerInfo;
}> = [
  {
    name: 'Claude Code’s apiKeyHelper',
    profile: 'claude',
    start: (d) => {
      const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
      return { pid: claude.pid, callKeyCommand: () => claude.callHelper(`${shellQuote(SHIM)} claude`) };
    },
    // Claude Code's apiKeyHelper (the harness marker), no agent marker.
    claim: (pid) => ({
      pid,
      start: startTime(pid),
      name: 'claude',
      claudeCode: true,
      invocation: 'api-key-helper',
      helperTtlMs: 300_000,
    }),
  },
  {
    name: 'Codex’s auth command',
    profile: 'codex',
    start: (d) => {
      const codex = startFakeCodex(d.dir, d.env);
      return {
        pid: codex.pid,
        callKeyCommand: () => codex.runAuth([SHIM, '--refresh-interval-ms', '300000', 'codex']),
      };
    },
    claim: (pid) => ({
      pid,
      start: startTime(pid),
      name: 'codex',
      claudeCode: false,
      agent: 'codex',
      invocation: 'api-key-helper',
      helperTtlMs: 300_000,
    }),
  },
];

describe.skipIf(process.platform !== 'linux' || addonMissing !== undefined)(
  'a forged key-command claim from outside the agent’s session',
  () => {
    // One daemon for both agents (~0.5 s of CPU a daemon), a profile each: the strikes, the
    // forced-fetch limit and the records are per profile.
    const d = sharedDaemon({
      prefix: 'kb-forge-',
      config: `profiles:\n${AGENTS.map((a) => `  ${a.profile}:\n    source: env:KB_KEY\n`).join('')}`,
      env: { KB_KEY: KEY },
    });

    it.each(AGENTS)('$name: cannot make the real one fail: its strikes affect only its own requests', async (agent) => {
      const real = agent.start(d);

      // The agent starts and runs its key command.
      expect(await real.callKeyCommand()).toEqual({ code: 0, stdout: `${KEY}\n`, stderr: '' });

      // Another process of the same user, not under the agent, speaks for it. It repeats.
      const claim = agent.claim(real.pid);
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
      const attack = await run(
        process.execPath,
        ['-e', ATTACKER, d.socket, agent.profile, JSON.stringify(claim), '3'],
        { env },
      );
      // Then the agent runs its key command again (Claude Code's settings changed, or a 401): it
      // is served. (Before: exit 7, KEY_REJECTED, on the forged claims' strike.)
      expect(await real.callKeyCommand()).toEqual({ code: 0, stdout: `${KEY}\n`, stderr: '' });
      // Each forged call looked like a repeat and was answered (a refetch, within the forced-fetch
      // limit), but left no strike behind. (Before: ok, then KEY_REJECTED twice, its strike kept.)
      expect(attack.code).toBe(0);
      expect(attack.stdout.trimEnd().split('\n')).toEqual(['ok', 'ok', 'ok']);
      // That was the real key command's first repeat; a second within the window is a real rejection.
      expect((await real.callKeyCommand()).code).toBe(ERROR_CODES.KEY_REJECTED);

      // The trail shows the forged claims for what they are: this profile's records, read from the
      // file as `keybroker audit --json` prints them (the CLI is not under test here).
      const file = path.join(d.env.XDG_STATE_HOME!, 'keybroker', 'audit.jsonl');
      const ours = (): AuditRecord[] =>
        fs.existsSync(file)
          ? fs
              .readFileSync(file, 'utf8')
              .split('\n')
              .filter((l) => l.endsWith('}'))
              .map((l) => JSON.parse(l) as AuditRecord)
              .filter((r) => r.profile === agent.profile)
          : [];
      await waitFor(() => ours().length >= 6, 5_000, 'the audit trail');
      const records = ours();
      expect(records.map((r) => [r.consumerIs, r.error ?? r.outcome])).toEqual([
        ['ancestor', 'fetched'],
        ['unrelated', 'refetched'],
        ['unrelated', 'refetched'],
        ['unrelated', 'refetched'],
        ['ancestor', 'refetched'],
        ['ancestor', 'KEY_REJECTED'],
      ]);
    });
  },
);
