// A process outside a Claude Code session that claims to be that session's apiKeyHelper — Claude
// Code's pid and start time, the harness marker's invocation, no agent marker — and repeats; the
// same for a Codex process's model provider auth command (agent "codex"). Before
// the daemon checked claims with the kernel, its "strikes" made the session's real helper exit 7
// (KEY_REJECTED) on its next call. Now a claim whose pid is neither the peer nor one of its
// ancestors changes nothing the real helper is judged by: its strike affects only its own request.
// What a process inside the session can still do is in docs/security.md.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import { ERROR_CODES, type ConsumerInfo, type StatusReply } from '../../src/protocol/messages.js';
import { run, SHIM, startDaemon, waitFor, type DaemonHandle, type RunResult, shellQuote } from '../helpers/daemon.js';
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
const [socketPath, claim, times] = process.argv.slice(1);
const request = JSON.stringify({ v: 1, op: 'get', profile: 'work', consumer: JSON.parse(claim) }) + '\\n';
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

/** The claim the attacker makes: the agent's pid and start time, its key command's invocation. */
const AGENTS: Array<{ name: string; start(d: DaemonHandle): Agent; claim(pid: number): ConsumerInfo }> = [
  {
    name: 'Claude Code’s apiKeyHelper',
    start: (d) => {
      const claude = startFakeClaude(d.dir, { ...d.env, ...CLAUDE_ENV });
      return { pid: claude.pid, callKeyCommand: () => claude.callHelper(`${shellQuote(SHIM)} work`) };
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
    start: (d) => {
      const codex = startFakeCodex(d.dir, d.env);
      return { pid: codex.pid, callKeyCommand: () => codex.runAuth([SHIM, '--refresh-interval-ms', '300000', 'work']) };
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
    it.each(AGENTS)('$name: cannot make the real one fail: its strikes affect only its own requests', async (agent) => {
      const d = await startDaemon({
        prefix: 'kb-forge-',
        config: 'profiles:\n  work:\n    source: env:KB_KEY\n',
        env: { KB_KEY: KEY },
      });
      const real = agent.start(d);

      // The agent starts and runs its key command.
      expect(await real.callKeyCommand()).toEqual({ code: 0, stdout: `${KEY}\n`, stderr: '' });

      // Another process of the same user, not under the agent, speaks for it. It repeats.
      const claim = agent.claim(real.pid);
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
      const attack = await run(process.execPath, ['-e', ATTACKER, d.socket, JSON.stringify(claim), '3'], { env });
      // Then the agent runs its key command again (Claude Code's settings changed, or a 401): it
      // is served. (Before: exit 7, KEY_REJECTED, on the forged claims' strike.)
      expect(await real.callKeyCommand()).toEqual({ code: 0, stdout: `${KEY}\n`, stderr: '' });
      // Each forged call looked like a repeat and was answered (a refetch, within the forced-fetch
      // limit), but left no strike behind. (Before: ok, then KEY_REJECTED twice, its strike kept.)
      expect(attack.code).toBe(0);
      expect(attack.stdout.trimEnd().split('\n')).toEqual(['ok', 'ok', 'ok']);
      // That was the real key command's first repeat; a second within the window is a real rejection.
      expect((await real.callKeyCommand()).code).toBe(ERROR_CODES.KEY_REJECTED);

      // The trail shows the forged claims for what they are.
      await waitFor(
        async () => (JSON.parse((await d.cli(['status', '--json'])).stdout) as StatusReply).audit!.written >= 6,
        5_000,
        'the audit trail',
      );
      const records = (await d.cli(['audit', '--json'])).stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as AuditRecord);
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
