// The real Claude Code CLI with its own sandbox (bubblewrap and socat on Linux; .ci/run installs
// them), after `keybroker setup claude --sandbox`, against the fake Messages API. The fake model
// asks the agent's Bash tool for the key every way there is: keybroker-shim (Node and native),
// the raw socket (socat and a node one-liner), `cat` of the file: key, of the config and of the
// audit trail's salt, the variable an env: profile reads, and `secret-tool lookup` of a keyring:
// profile's key in a real Secret Service (where .ci/run installed one); and it uses Claude Code's own file
// tools (Read, Grep), which run outside the sandbox, on the same files. Every attempt is refused, and
// Claude Code's own apiKeyHelper, which runs outside the sandbox, still serves the session. The
// same commands without the sandbox get the key, so the refusals are the sandbox's doing.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { FakeMessagesApi } from '../fakes/fake-messages-api.js';
import { claudeCode, CLI_INSTALL_TIMEOUT_MS } from '../helpers/pinned-cli.js';
import { cleanUp } from '../helpers/cleanup.js';
import { CLI, NATIVE_SHIM, run, SHIM, SHIMS, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { SECRET_SERVICE_SKIP, startSecretService, type SecretService } from '../helpers/secret-service.js';

const KEY = 'sk-ant-sandbox-test-5d1e9a';
const ENV_KEY = 'sk-ant-sandbox-env-77c2b0';
const KEYCHAIN_KEY = 'sk-ant-sandbox-keychain-3f81d4';
/** The keyring: profile's entry, as secret-tool names it (keyring://SERVICE/ACCOUNT). */
const KEYCHAIN_ENTRY = ['service', 'kb-sbx', 'username', 'desk'];
const RUN_TIMEOUT_MS = 90_000;
const nativeBuilt = SHIMS.find((s) => s.name === 'native')!.skip === undefined;

let CLAUDE: string;
/** A real Secret Service holding the keyring: profile's key, where one can run (.ci/run installs it). */
let ss: SecretService | undefined;
beforeAll(async () => {
  CLAUDE = await claudeCode();
  if (SECRET_SERVICE_SKIP || process.platform !== 'linux') return;
  ss = await startSecretService();
  const stored = await ss.secretTool(['store', '--label=kb-sbx', ...KEYCHAIN_ENTRY], KEYCHAIN_KEY);
  if (stored.code !== 0) throw new Error(`secret-tool store failed: ${stored.stderr}`);
}, CLI_INSTALL_TIMEOUT_MS + 60_000);

let d: DaemonHandle;
let api: FakeMessagesApi;
let project: string;
let keyFile: string;
beforeEach(async () => {
  api = await FakeMessagesApi.start();
  cleanUp(() => api.close());
  d = await startDaemon({
    config:
      'profiles:\n  default:\n    source: file:~/keys/anthropic\n  ci:\n    source: env:KB_SBX_ENV_KEY\n' +
      '  desk:\n    source: keyring://kb-sbx/desk\n',
    env: { KB_SBX_ENV_KEY: ENV_KEY },
    logLevel: 'info',
  });
  keyFile = path.join(d.dir, 'keys', 'anthropic');
  fs.mkdirSync(path.dirname(keyFile), { mode: 0o700 });
  fs.writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
  project = path.join(d.dir, 'project');
  fs.mkdirSync(project);
  fs.mkdirSync(path.join(d.dir, 'tmp'));
});

/** Claude Code's environment: the test daemon's, talking only to the fake API. */
function claudeEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...d.env,
    KB_SBX_ENV_KEY: ENV_KEY,
    ...ss?.env,
    // Autostart on: a shim that tried to start a daemon inside the sandbox would show it.
    KEYBROKER_NO_AUTOSTART: '0',
    ANTHROPIC_BASE_URL: api.url,
    TMPDIR: path.join(d.dir, 'tmp'),
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_AUTOUPDATER: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  };
  for (const name of ['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDECODE', 'CLAUDE_PID', 'CLAUDE_CONFIG_DIR'])
    delete env[name];
  return env;
}

/** Every way the agent could try, each followed by its exit status on a line of its own. */
function attempts(): string {
  const socket = d.socket;
  const salt = path.join(d.env.XDG_STATE_HOME!, 'keybroker', 'audit.salt');
  const request = JSON.stringify({ v: 1, op: 'get', profile: 'default' });
  const raw = `require("net").connect(${JSON.stringify(socket)}).on("connect",function(){this.end(${JSON.stringify(`${request}\n`)})}).on("data",(b)=>process.stdout.write(b)).on("error",(e)=>{console.log("node-error="+e.code);process.exitCode=9})`;
  return [
    'echo "marker=${SANDBOX_RUNTIME:-none}"',
    `${SHIM}; echo "node-shim-exit=$?"`,
    ...(nativeBuilt ? [`${NATIVE_SHIM}; echo "native-shim-exit=$?"`] : []),
    `${process.execPath} ${CLI} get default; echo "cli-get-exit=$?"`,
    `echo '${request}' | socat - UNIX-CONNECT:${socket}; echo "socat-exit=$?"`,
    `${process.execPath} -e '${raw}'; echo "node-raw-exit=$?"`,
    `cat ${keyFile}; echo "cat-key-exit=$?"`,
    `cat ${d.configPath}; echo "cat-config-exit=$?"`,
    `cat ${salt} >/dev/null; echo "cat-salt-exit=$?"`,
    'echo "env-key=${KB_SBX_ENV_KEY:-unset}"',
    ...(ss ? [`secret-tool lookup ${KEYCHAIN_ENTRY.join(' ')}; st=$?; echo; echo "secret-tool-exit=$st"`] : []),
  ].join('\n');
}

/**
 * One session in which the model runs `attempts()` through its Bash tool and, with Claude Code's
 * own file tools (which run outside the sandbox; the user has allowed them), reads the key file
 * and the config and searches the state directory. What the Bash tool printed, and what the file
 * tools returned.
 */
async function agentSession(): Promise<{ code: number | null; stdout: string; tool: string; files: string }> {
  api.answer = (req) =>
    req.toolResults.length === 0
      ? [
          {
            type: 'tool_use',
            id: 'toolu_sandbox_bash',
            name: 'Bash',
            input: { command: attempts(), description: 'Look for the API key' },
          },
          { type: 'tool_use', id: 'toolu_sandbox_read_key', name: 'Read', input: { file_path: keyFile } },
          { type: 'tool_use', id: 'toolu_sandbox_read_config', name: 'Read', input: { file_path: d.configPath } },
          {
            type: 'tool_use',
            id: 'toolu_sandbox_grep_state',
            name: 'Grep',
            input: { pattern: '.', path: path.join(d.env.XDG_STATE_HOME!, 'keybroker'), output_mode: 'content' },
          },
        ]
      : [{ type: 'text', text: 'done looking' }];
  const r = await run(CLAUDE, ['-p', 'find the api key', '--allowedTools', 'Bash', 'Read', 'Grep'], {
    env: claudeEnv(),
    cwd: project,
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const results = api.requests.flatMap((q) => q.toolResults);
  const tool = results.find((t) => t.includes('marker=')) ?? '';
  return { code: r.code, stdout: r.stdout, tool, files: results.filter((t) => t !== tool).join('\n') };
}

function exitOf(tool: string, name: string): number {
  const m = new RegExp(`^${name}-exit=(\\d+)$`, 'm').exec(tool);
  if (!m) throw new Error(`no ${name}-exit in the tool's output:\n${tool}`);
  return Number(m[1]);
}

describe.runIf(process.platform === 'linux')('the real Claude Code, sandboxed by setup claude --sandbox', () => {
  it(
    'refuses the agent every way to the key, and the helper still serves',
    async () => {
      const setup = await run(process.execPath, [CLI, 'setup', 'claude', '--sandbox'], { env: d.env, cwd: project });
      expect(setup.code).toBe(0);
      // doctor, reading what setup wrote, finds every way closed.
      const doctor = await run(process.execPath, [CLI, 'doctor', '--json', '--no-fetch'], {
        env: claudeEnv(),
        cwd: project,
      });
      const statuses = Object.fromEntries(
        (JSON.parse(doctor.stdout) as Array<{ id: string; status: string }>)
          .filter((c) => c.id.startsWith('sandbox'))
          .map((c) => [c.id, c.status]),
      );
      expect(statuses).toEqual({
        sandbox: 'ok',
        'sandbox-escape': 'ok',
        'sandbox-socket': 'ok',
        'sandbox-keychain': 'ok',
        'sandbox-config': 'ok',
        'sandbox-keys': 'ok',
        'sandbox-state': 'ok',
        'sandbox-env': 'ok',
        'sandbox-file-tools': 'ok',
      });
      const session = await agentSession();
      expect(session.code).toBe(0);
      expect(session.stdout).toContain('done looking');
      const { tool, files } = session;
      // The sandbox engaged: Claude Code's runtime marks the command's environment.
      expect(tool).toMatch(/^marker=1$/m);
      expect(exitOf(tool, 'node-shim')).toBe(ERROR_CODES.SANDBOXED);
      if (nativeBuilt) expect(exitOf(tool, 'native-shim')).toBe(ERROR_CODES.SANDBOXED);
      expect(exitOf(tool, 'cli-get')).toBe(ERROR_CODES.SANDBOXED);
      expect(exitOf(tool, 'socat')).not.toBe(0);
      expect(tool).toMatch(/^node-error=EPERM$/m);
      expect(exitOf(tool, 'cat-key')).not.toBe(0);
      expect(exitOf(tool, 'cat-config')).not.toBe(0);
      expect(exitOf(tool, 'cat-salt')).not.toBe(0);
      expect(tool).toMatch(/^env-key=unset$/m);
      expect(tool).not.toContain(KEY);
      expect(tool).not.toContain(ENV_KEY);
      expect(tool).not.toContain('source: file:');
      // The Secret Service answers over the session bus, a Unix socket the sandbox refuses too.
      if (ss) {
        expect(exitOf(tool, 'secret-tool')).not.toBe(0);
        expect(tool).not.toContain(KEYCHAIN_KEY);
      }
      // Claude Code's own file tools, allowed by the user, are stopped by the Read(…) deny rules.
      expect(files).not.toBe('');
      expect(files).not.toContain(KEY);
      expect(files).not.toContain('source: file:');
      // No daemon was started inside: still the one daemon, and the helper's requests carried the key.
      expect(new Set(api.keys())).toEqual(new Set([KEY]));
      expect(api.requests.map((q) => q.bearer)).toEqual(api.keys());
    },
    RUN_TIMEOUT_MS + 30_000,
  );

  it(
    'without the sandbox the same commands get the key (so the refusals above are the sandbox’s)',
    async () => {
      const setup = await run(process.execPath, [CLI, 'setup', 'claude'], { env: d.env, cwd: project });
      expect(setup.code).toBe(0);
      const { code, tool, files } = await agentSession();
      expect(code).toBe(0);
      expect(files).toContain(KEY);
      expect(files).toContain('source: file:');
      expect(tool).toMatch(/^marker=none$/m);
      expect(exitOf(tool, 'node-shim')).toBe(0);
      expect(exitOf(tool, 'cat-key')).toBe(0);
      expect(exitOf(tool, 'cat-config')).toBe(0);
      expect(exitOf(tool, 'socat')).toBe(0);
      expect(exitOf(tool, 'cat-salt')).toBe(0);
      expect(tool).toContain(KEY);
      expect(tool).toMatch(new RegExp(`^env-key=${ENV_KEY}$`, 'm'));
      if (ss) {
        expect(exitOf(tool, 'secret-tool')).toBe(0);
        expect(tool).toContain(KEYCHAIN_KEY);
      }
    },
    RUN_TIMEOUT_MS + 30_000,
  );
});
