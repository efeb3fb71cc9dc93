// Who is asking: the shim's consumer is the nearest ancestor that is not a shell (Claude Code runs
// helpers through `sh -c`), which agent CLI it is (Claude Code, Codex), and how the agent ran us
// (its key command, a sibling helper, its own shell tool). Built-ins only: part of the shim's
// start-up path.
import fs from 'node:fs';
import path from 'node:path';
import { REFRESH_INTERVAL_OPTION, type Agent, type ConsumerInfo, type Invocation } from '../protocol/messages.js';
import type { Format } from './output-format.js';

/**
 * What consumer detection reads, as data: the native shim's copies are generated from these by
 * scripts/build-native.mjs, so the two shims find the same consumer.
 */
export const SHELL_NAMES = [
  'sh',
  'bash',
  'dash',
  'zsh',
  'fish',
  'ksh',
  'mksh',
  'pdksh',
  'ash',
  'busybox',
  'tcsh',
  'csh',
  'nu',
  'xonsh',
] as const;
export const CONSUMER_LIMITS = {
  /** Ancestors looked at, nearest first. */
  maxDepth: 8,
  /** Of /proc/PID/cmdline, only this much is read, and only its first `argvChecked` arguments. */
  cmdlineBytes: 4096,
  argvChecked: 2,
  defaultHelperTtlMs: 300_000,
} as const;
/** Claude Code's helper TTL, which the shim reads from its environment (see findConsumer). */
export const HELPER_TTL_ENV = 'CLAUDE_CODE_API_KEY_HELPER_TTL_MS';
/** Node 24's main thread name, which Linux shows as a Node consumer's comm (see findConsumer). */
export const NODE_MAIN_THREAD = 'MainThread';

/**
 * A test on the shim's own environment or arguments:
 * - set: the variable is set and not empty;
 * - equals, prefix, suffix: its value is, starts with or ends with `value`;
 * - other-pid: it is set and is not the consumer's pid;
 * - arg: the shim was given the option `name` (as `name V` or `name=V`).
 */
export const CONDITION_TESTS = ['set', 'equals', 'prefix', 'suffix', 'other-pid', 'arg'] as const;
export interface Condition {
  test: (typeof CONDITION_TESTS)[number];
  name: string;
  value?: string;
}

/** A rule says how the agent ran the shim when all its conditions hold; `helper` is its key command. */
export interface InvocationRule {
  invocation: 'helper' | 'agent-tool';
  when: readonly Condition[];
}

/**
 * What tells one agent CLI apart, as data: the native shim's copy is generated from this table
 * (scripts/native-header.mjs), so both shims follow the same rules.
 */
export interface AgentRules {
  agent: Agent;
  /** The consumer process is the agent: its name starts with this word (case aside, /^name\b/i),
   * or one of its first arguments is this name, ends in /name, or holds `packagePath`. */
  processName: string;
  packagePath: string;
  /** Any one of these says the agent's environment reached the shim; an empty list: the process alone does. */
  environment: readonly Condition[];
  /** The first rule that holds says how the agent ran the shim; none: `unmarked`. */
  invocations: readonly InvocationRule[];
}

const env = (test: Condition['test'], name: string, value?: string): Condition =>
  value === undefined ? { test, name } : { test, name, value };

/**
 * The agents, in the order they are tried (../../docs/claude-code.md and ../../docs/codex.md say
 * what was measured).
 *
 * Claude Code runs apiKeyHelper through `sh -c` with AI_AGENT=claude-code_<version>_harness, and
 * its Bash tool with AI_AGENT=…_agent, CLAUDECODE=1, CLAUDE_CODE_CHILD_SESSION and CLAUDE_PID. A
 * Claude Code started from another one's Bash tool (nested) inherits that one's agent markers —
 * CLAUDE_PID the other's pid — and marks its own helper …_harness (measured on 2.1.332): the
 * harness marker with a CLAUDE_PID that is not the consumer's is our claude's helper. Otherwise an
 * agent marker wins over the harness marker.
 *
 * Codex runs a model provider's auth command directly (no shell), with its own environment as it
 * got it: nothing marks it. Its exec_command tool runs commands with CODEX_THREAD_ID,
 * CODEX_SESSION_ID and CODEX_TOOL_CALL_ID set, often with no shell left between (bash execs the
 * last command) — so the same parent as the auth command. What marks the auth command is the
 * --refresh-interval-ms that `keybroker setup codex` writes into its args. A Codex started from
 * another one's tool inherits that one's markers: its auth command counts as a tool run (never as
 * a 401), the safe way to be wrong.
 */
export const AGENT_RULES: readonly AgentRules[] = [
  {
    agent: 'claude-code',
    processName: 'claude',
    packagePath: '@anthropic-ai/claude-code/',
    environment: [env('set', 'CLAUDE_CODE_ENTRYPOINT'), env('prefix', 'AI_AGENT', 'claude-code')],
    invocations: [
      { invocation: 'helper', when: [env('suffix', 'AI_AGENT', '_harness'), env('other-pid', 'CLAUDE_PID')] },
      { invocation: 'agent-tool', when: [env('equals', 'CLAUDECODE', '1')] },
      { invocation: 'agent-tool', when: [env('suffix', 'AI_AGENT', '_agent')] },
      { invocation: 'agent-tool', when: [env('set', 'CLAUDE_CODE_CHILD_SESSION')] },
      { invocation: 'agent-tool', when: [env('set', 'CLAUDE_PID')] },
      { invocation: 'helper', when: [env('suffix', 'AI_AGENT', '_harness')] },
    ],
  },
  {
    agent: 'codex',
    processName: 'codex',
    packagePath: '@openai/codex',
    environment: [],
    invocations: [
      { invocation: 'agent-tool', when: [env('set', 'CODEX_THREAD_ID')] },
      { invocation: 'agent-tool', when: [env('set', 'CODEX_SESSION_ID')] },
      { invocation: 'agent-tool', when: [env('set', 'CODEX_TOOL_CALL_ID')] },
      { invocation: 'helper', when: [env('arg', REFRESH_INTERVAL_OPTION)] },
    ],
  },
];
/**
 * Claude Code's settings files, as the helper's session reads them: it drops its cached key and
 * re-runs apiKeyHelper when one changes (see settingsMtimeMs). Read only for a consumer that the
 * agent table (AGENT_RULES) finds to be Claude Code.
 */
export const CLAUDE_SETTINGS_FILES = {
  /** The user's settings: $CLAUDE_CONFIG_DIR/settings.json, else $HOME/.claude/settings.json. */
  configDirEnv: 'CLAUDE_CONFIG_DIR',
  homeEnv: 'HOME',
  dir: '.claude',
  settings: 'settings.json',
  /** Beside the project's .claude/settings.json, in the helper's working directory. */
  localSettings: 'settings.local.json',
  managedLinux: '/etc/claude-code/managed-settings.json',
  managedDarwin: '/Library/Application Support/ClaudeCode/managed-settings.json',
} as const;
const S = CLAUDE_SETTINGS_FILES;
const SHELLS: ReadonlySet<string> = new Set(SHELL_NAMES);

interface ProcInfo {
  ppid: number;
  comm: string;
  start: string | undefined;
}

function procInfoLinux(pid: number): ProcInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so cut at the last ')'.
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    return { comm: stat.slice(open + 1, close), ppid: Number(fields[1]), start: fields[19] };
  } catch {
    return undefined;
  }
}

function argvLinux(pid: number): string[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/cmdline`, 'latin1')
      .slice(0, CONSUMER_LIMITS.cmdlineBytes)
      .split('\0')
      .slice(0, CONSUMER_LIMITS.argvChecked);
  } catch {
    return [];
  }
}

async function procTableDarwin(): Promise<Map<number, ProcInfo>> {
  const { spawnSync } = await import('node:child_process');
  const out = spawnSync('/bin/ps', ['-A', '-o', 'pid=,ppid=,comm='], { encoding: 'utf8', timeout: 2000 });
  const table = new Map<number, ProcInfo>();
  for (const line of (out.stdout ?? '').split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m) table.set(Number(m[1]), { ppid: Number(m[2]), comm: path.basename(m[3]!.trim()), start: undefined });
  }
  return table;
}

/** What the shim was told on its command line that consumer detection uses. */
export interface ShimCall {
  format: Format;
  /** The options given (names only, e.g. --refresh-interval-ms), for `arg` conditions. */
  options: ReadonlySet<string>;
  /** --refresh-interval-ms: how often the consumer runs the shim on schedule. */
  refreshIntervalMs: number | undefined;
  /** The helper's working directory (the project), undefined when it has been deleted. */
  cwd?: string | undefined;
}

export async function findConsumer(call: ShimCall): Promise<ConsumerInfo | undefined> {
  const linux = process.platform === 'linux';
  const table = linux ? undefined : process.platform === 'darwin' ? await procTableDarwin() : undefined;
  if (!linux && !table) return undefined;
  let pid = process.ppid;
  for (let depth = 0; depth < CONSUMER_LIMITS.maxDepth && pid > 1; depth++) {
    const info = linux ? procInfoLinux(pid) : table!.get(pid);
    if (!info) return undefined;
    let name = info.comm.replace(/^-/, '');
    // Node 24 names its main thread "MainThread", which on Linux is the process's comm: a Node
    // consumer that does not set process.title (claude run by node through a symlink) shows as
    // MainThread there, and as its own name on Node 20. Its argv[0] still says who it is.
    if (linux && name === NODE_MAIN_THREAD) name = path.basename(argvLinux(pid)[0] ?? '') || name;
    if (!SHELLS.has(name)) {
      const consumerPid = pid;
      const argv = (): string[] => (linux ? argvLinux(consumerPid) : []);
      const rules = AGENT_RULES.find((r) => isAgent(r, name, argv, call, consumerPid));
      // Key order as the protocol documents it: pid, start, name, claudeCode, agent, invocation, helperTtlMs,
      // settingsMtimeMs.
      const consumer: ConsumerInfo = {
        pid,
        ...(info.start && { start: info.start }),
        name,
        claudeCode: rules?.agent === 'claude-code',
        ...(rules && rules.agent !== 'claude-code' && { agent: rules.agent }),
        ...(rules && { invocation: invocationOf(rules, call, pid) }),
      };
      const ttl = call.refreshIntervalMs ?? Number(process.env[HELPER_TTL_ENV]);
      consumer.helperTtlMs = Number.isInteger(ttl) && ttl > 0 ? ttl : CONSUMER_LIMITS.defaultHelperTtlMs;
      if (consumer.claudeCode) consumer.settingsMtimeMs = settingsMtimeMs(claudeSettingsFiles(process.env, call.cwd));
      return consumer;
    }
    pid = info.ppid;
  }
  return undefined;
}

function holds(c: Condition, call: ShimCall, consumerPid: number): boolean {
  if (c.test === 'arg') return call.options.has(c.name);
  const v = process.env[c.name];
  if (v === undefined) return false;
  switch (c.test) {
    case 'set':
      return v !== '';
    case 'equals':
      return v === c.value;
    case 'prefix':
      return v.startsWith(c.value!);
    case 'suffix':
      return v.endsWith(c.value!);
    case 'other-pid':
      return v !== '' && v !== String(consumerPid);
  }
}

/**
 * The agent's environment reached us (through the shell), and the consumer process is the agent:
 * a native binary of that name, or node running its npm package. A tool the agent runs inherits
 * the same environment but is another process.
 */
function isAgent(rules: AgentRules, name: string, argv: () => string[], call: ShimCall, pid: number): boolean {
  if (rules.environment.length > 0 && !rules.environment.some((c) => holds(c, call, pid))) return false;
  if (new RegExp(`^${rules.processName}\\b`, 'i').test(name)) return true;
  const p = rules.processName;
  return argv().some((arg) => arg === p || arg.endsWith(`/${p}`) || arg.includes(rules.packagePath));
}

/**
 * How the agent ran us. Its key command and its own shell tool both run under the agent's
 * process, so the consumer alone cannot tell a 401 repeat from the agent checking its key twice;
 * the environment and the shim's arguments can (AGENT_RULES).
 */
function invocationOf(rules: AgentRules, call: ShimCall, consumerPid: number): Invocation {
  const rule = rules.invocations.find((r) => r.when.every((c) => holds(c, call, consumerPid)));
  if (!rule) return 'unmarked';
  if (rule.invocation === 'agent-tool') return 'agent-tool';
  return call.format === 'raw' ? 'api-key-helper' : 'sibling-helper';
}

/**
 * The settings files a Claude Code session in `cwd` reads (whether or not they exist). The native
 * shim's list is generated from this function (scripts/native-header.mjs), with the directories as
 * template arguments.
 */
export function claudeSettingsFiles(env: NodeJS.ProcessEnv, cwd: string | undefined): string[] {
  const files: string[] = [];
  const home = env[S.homeEnv];
  const configDir = env[S.configDirEnv] || (home ? path.join(home, S.dir) : undefined);
  if (configDir) files.push(path.join(configDir, S.settings));
  if (cwd) files.push(path.join(cwd, S.dir, S.settings), path.join(cwd, S.dir, S.localSettings));
  if (process.platform === 'linux') files.push(S.managedLinux);
  else if (process.platform === 'darwin') files.push(S.managedDarwin);
  return files;
}

/**
 * The newest modification time of `files`, in whole milliseconds (0: none exists). Claude Code
 * re-runs its helper when a settings file changes, which keybroker must not take for a 401 (see
 * src/cache/consumers.ts, settingsChanged). A file that cannot be read counts as absent.
 */
export function settingsMtimeMs(files: readonly string[]): number {
  let newest = 0n;
  for (const file of files) {
    try {
      const st = fs.statSync(file, { bigint: true, throwIfNoEntry: false });
      if (st && st.mtimeNs > newest) newest = st.mtimeNs;
    } catch {
      // not a directory on the way, a name too long, no permission: absent
    }
  }
  return Number(newest / 1_000_000n);
}
