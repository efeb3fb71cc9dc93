// The real Codex CLI (npm @openai/codex, installed on first use by test/helpers/pinned-cli.ts at
// the version pinned there) against the fake Responses API, with a model provider whose auth
// command is the built shim and a real daemon: a start, the 401 path, a revoked key, and the
// agent's exec_command tool running the shim, in Codex's own process tree and environment.
// `codex exec` with CODEX_HOME in a temporary directory; every run is bounded in time. Where it
// cannot be installed (no registry), these tests fail rather than skip.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-record.js';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { SHIM_TEXT } from '../../src/shim/shim-messages.js';
import { FakeResponsesApi } from '../fakes/fake-responses-api.js';
import { CLI_INSTALL_TIMEOUT_MS, codex } from '../helpers/pinned-cli.js';
import { cleanUp } from '../helpers/cleanup.js';
import { CLI, run, SHIM, startCountingDaemon, waitFor, type CountingDaemon } from '../helpers/daemon.js';
import { HARDENING_ADDON } from '../helpers/install-copy.js';

let CODEX: string;
beforeAll(async () => {
  CODEX = await codex();
}, CLI_INSTALL_TIMEOUT_MS + 60_000);

const RUN_TIMEOUT_MS = 90_000;
/** What `keybroker setup codex` writes for a profile with this refresh interval. */
const AUTH_ARGS = ['--refresh-interval-ms', '300000', 'work'];

let d: CountingDaemon;
let api: FakeResponsesApi;
let project: string;
let codexHome: string;
/** The trail's complete lines so far (a batch may be half written when read). */
const wholeAudit = (): string[] => {
  const text = fs.readFileSync(path.join(d.dir, 'state', 'keybroker', 'audit.jsonl'), 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean);
};
const audit = (): AuditRecord[] =>
  fs
    .readFileSync(path.join(d.dir, 'state', 'keybroker', 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditRecord);

beforeEach(async () => {
  api = await FakeResponsesApi.start();
  cleanUp(() => api.close());
  d = await startCountingDaemon();
  project = path.join(d.dir, 'project');
  codexHome = path.join(d.dir, '.codex');
  for (const dir of [project, codexHome, path.join(d.dir, 'tmp')]) fs.mkdirSync(dir);
  writeConfig(SHIM, AUTH_ARGS);
});

/** A provider for the fake API; with `command`, its auth table as `setup codex` writes it. */
function writeConfig(command?: string, args: string[] = []): void {
  const auth = command
    ? [
        '[model_providers.kb.auth]',
        `command = ${JSON.stringify(command)}`,
        `args = ${JSON.stringify(args)}`,
        'refresh_interval_ms = 300000',
      ]
    : [];
  fs.writeFileSync(
    path.join(codexHome, 'config.toml'),
    [
      'model_provider = "kb"',
      'model = "gpt-5.1"',
      '',
      '[model_providers.kb]',
      'name = "kb"',
      `base_url = ${JSON.stringify(api.url)}`,
      'wire_api = "responses"',
      '',
      ...auth,
      '',
    ].join('\n'),
  );
}

/** `codex exec PROMPT` in the project, CODEX_HOME the test's, talking only to the fake API. */
function codexExec(prompt: string, args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): ReturnType<typeof run> {
  const env: NodeJS.ProcessEnv = {
    ...d.env,
    CODEX_HOME: codexHome,
    // Codex refuses to put its helper binaries under the temporary directory: not CODEX_HOME's parent.
    TMPDIR: path.join(d.dir, 'tmp'),
  };
  // Anything that would say we already run inside Codex, or point it elsewhere.
  for (const name of Object.keys(env)) if (name.startsWith('CODEX_') && name !== 'CODEX_HOME') delete env[name];
  for (const name of ['OPENAI_API_KEY', 'OPENAI_BASE_URL']) delete env[name];
  return run(CODEX, ['exec', '--skip-git-repo-check', ...args, prompt], {
    env: { ...env, ...extraEnv },
    cwd: project,
    timeoutMs: RUN_TIMEOUT_MS,
  });
}

describe('the real Codex CLI with keybroker-shim as its auth command', () => {
  it(
    'after keybroker setup codex, starts with the key from the daemon: one fetch, every request carries it, even with OPENAI_API_KEY and CODEX_API_KEY exported',
    async () => {
      d.setKey('sk-codex-start');
      writeConfig();
      const setup = await run(process.execPath, [CLI, 'setup', 'codex', '--profile', 'work'], {
        env: { ...d.env, CODEX_HOME: codexHome },
      });
      expect(setup.code).toBe(0);
      // No variable takes precedence over a provider's auth command (doctor's codex-auth says so).
      const r = await codexExec('say hi', [], { OPENAI_API_KEY: 'sk-from-env', CODEX_API_KEY: 'sk-from-codex-env' });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('hello from the fake Responses API');
      // The models requests and the response, all with the one key.
      expect(api.responses()).toHaveLength(1);
      expect(new Set(api.requests.map((q) => q.key))).toEqual(new Set(['sk-codex-start']));
      expect(d.fetches()).toBe(1);
      expect(audit().map((a) => a.consumer)).toEqual([
        expect.objectContaining({ name: 'codex', agent: 'codex', invocation: 'api-key-helper', claudeCode: false }),
      ]);
      // With the hardening addon, the kernel confirms the claim (Codex is the shim's parent), so
      // the auth command's repeats may leave strikes: that is what ends a revoked key in
      // KEY_REJECTED (the revoked-key case below, which starts its own daemon).
      if (fs.existsSync(HARDENING_ADDON)) expect(audit()[0]!.consumerIs).toBe('ancestor');
    },
    RUN_TIMEOUT_MS + 10_000,
  );

  it(
    'gets the rotated key after a 401, at the cost of at most 2 backend fetches',
    async () => {
      d.setKey('sk-codex-old');
      expect((await d.shim('work')).stdout).toBe('sk-codex-old\n');
      d.setKey('sk-codex-new');
      api.rejectedKeys.add('sk-codex-old');
      const r = await codexExec('say hi');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('hello from the fake Responses API');
      // The cached key got a 401; Codex ran its auth command again and retried with the new one.
      expect(api.responses().map((q) => [q.status, q.key])).toEqual([
        [401, 'sk-codex-old'],
        [200, 'sk-codex-new'],
      ]);
      expect(d.fetches()).toBeLessThanOrEqual(2);
      expect(d.log()).toContain('its key was probably rejected');
    },
    RUN_TIMEOUT_MS + 10_000,
  );

  it(
    'a revoked key ends with our one-line error (KEY_REJECTED), not a retry loop',
    async () => {
      d.setKey('sk-codex-revoked');
      api.rejectedKeys.add('sk-codex-revoked');
      const r = await codexExec('say hi');
      expect(r.code).not.toBe(0);
      // Codex shows the shim's line; the daemon recorded why.
      expect(`${r.stdout}${r.stderr}`).toContain(SHIM_TEXT.prefix);
      const rejected = audit().filter((a) => a.error === 'KEY_REJECTED');
      expect(rejected.length).toBeGreaterThan(0);
      expect(rejected[0]!.consumer).toMatchObject({ agent: 'codex', invocation: 'api-key-helper' });
      // Codex gave up after its own retries: bounded, and so are the backend's reads (the first,
      // and one per suspected rejection).
      expect(api.responses().length).toBeLessThanOrEqual(10);
      expect(d.fetches()).toBeLessThanOrEqual(4);
    },
    RUN_TIMEOUT_MS + 10_000,
  );

  it(
    'the agent running the shim through exec_command never counts as a 401; the auth command after a 401 still does',
    async () => {
      d.setKey('sk-codex-tool');
      // The agent runs exactly what config.toml runs, and the shim plain.
      const command = `${[SHIM, ...AUTH_ARGS].join(' ')}; echo "exit=$?"; ${SHIM} work; echo "exit=$?"`;
      api.answer = (req) =>
        req.toolOutputs.length === 0
          ? [{ type: 'function_call', name: 'exec_command', callId: 'call_check_key', arguments: { cmd: command } }]
          : [{ type: 'message', text: 'your key works' }];
      // The request carrying the tool's output gets one 401, so Codex runs its auth command again.
      let rejected = false;
      api.rejectIf = (req) => req.toolOutputs.length > 0 && !rejected && (rejected = true);
      const r = await codexExec('is my key set up?', ['--dangerously-bypass-approvals-and-sandbox']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('your key works');
      expect(api.responses().flatMap((q) => q.toolOutputs)[0]).toMatch(/sk-codex-tool\nexit=0\nsk-codex-tool\nexit=0/);
      expect(api.responses().map((q) => q.status)).toEqual([200, 401, 200]);
      // Two tool runs from the codex process, then the auth command's one repeat: a refetch, and
      // the same key once more (the fake rejected it only once). The trail is appended in batches.
      await waitFor(() => wholeAudit().length >= 4, 10_000);
      expect(audit().map((a) => a.consumer?.invocation)).toEqual([
        'api-key-helper',
        'agent-tool',
        'agent-tool',
        'api-key-helper',
      ]);
      expect(d.log().match(/its key was probably rejected/g)).toHaveLength(1);
      expect(d.fetches()).toBe(2);
    },
    RUN_TIMEOUT_MS + 10_000,
  );

  it(
    'in Codex’s sandbox the agent’s tool cannot reach the daemon at all',
    async () => {
      d.setKey('sk-codex-sandboxed');
      api.answer = (req) =>
        req.toolOutputs.length === 0
          ? [
              {
                type: 'function_call',
                name: 'exec_command',
                callId: 'call_sandboxed',
                arguments: { cmd: `${SHIM} work; echo "exit=$?"` },
              },
            ]
          : [{ type: 'message', text: 'done' }];
      const r = await codexExec('is my key set up?', ['--sandbox', 'workspace-write']);
      expect(r.code).toBe(0);
      const output = api.responses().flatMap((q) => q.toolOutputs)[0];
      expect(output).toBeDefined();
      expect(output).not.toContain('sk-codex-sandboxed');
      // The shim says so with its own status rather than a failed connection's (main's SANDBOXED).
      expect(output).toContain(`exit=${ERROR_CODES.SANDBOXED}`);
      expect(audit().map((a) => a.consumer?.invocation)).toEqual(['api-key-helper']);
      expect(d.fetches()).toBe(1);
    },
    RUN_TIMEOUT_MS + 10_000,
  );
});
