// Who is asking: the shim's consumer is the nearest ancestor that is not a shell (Claude Code runs
// helpers through `sh -c`), and how Claude Code ran us (apiKeyHelper, a sibling helper, the
// agent's Bash tool). Built-ins only: part of the shim's start-up path.
import fs from 'node:fs';
import path from 'node:path';
import type { ConsumerInfo, Invocation } from '../protocol/messages.js';
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
/** Claude Code's markers (../../../shared/claude-code.md): its environment, process name and package. */
export const CLAUDE_MARKERS = {
  entrypointEnv: 'CLAUDE_CODE_ENTRYPOINT',
  agentEnv: 'AI_AGENT',
  /** AI_AGENT starts with this in Claude Code's processes … */
  agentPrefix: 'claude-code',
  /** … and ends with this in its helpers, and with `agentSuffix` in the agent's Bash tool. */
  harnessSuffix: '_harness',
  agentSuffix: '_agent',
  /** Set to "1" in the agent's Bash tool. */
  claudeCodeEnv: 'CLAUDECODE',
  childSessionEnv: 'CLAUDE_CODE_CHILD_SESSION',
  claudePidEnv: 'CLAUDE_PID',
  helperTtlEnv: 'CLAUDE_CODE_API_KEY_HELPER_TTL_MS',
  /** The process name, as a word at its start, case aside (/^claude\b/i). */
  processName: 'claude',
  /** An argument naming the npm package's files. */
  packagePath: '@anthropic-ai/claude-code/',
  /** Node 24's main thread name, which Linux shows as a Node consumer's comm (see findConsumer). */
  nodeMainThread: 'MainThread',
} as const;
/**
 * Claude Code's settings files, as the helper's session reads them: it drops its cached key and
 * re-runs apiKeyHelper when one changes (see settingsMtimeMs).
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
const M = CLAUDE_MARKERS;
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

/** `cwd`: the helper's working directory (the project), undefined when it has been deleted. */
export async function findConsumer(format: Format, cwd?: string): Promise<ConsumerInfo | undefined> {
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
    if (linux && name === M.nodeMainThread) name = path.basename(argvLinux(pid)[0] ?? '') || name;
    if (!SHELLS.has(name)) {
      const claudeCode = isClaudeCode(name, () => (linux ? argvLinux(pid) : []));
      // Key order as the protocol documents it: pid, start, name, claudeCode, invocation, helperTtlMs,
      // settingsMtimeMs.
      const consumer: ConsumerInfo = {
        pid,
        ...(info.start && { start: info.start }),
        name,
        claudeCode,
        ...(claudeCode && { invocation: invocationOf(process.env, format, pid) }),
      };
      const ttl = Number(process.env[M.helperTtlEnv]);
      consumer.helperTtlMs = Number.isInteger(ttl) && ttl > 0 ? ttl : CONSUMER_LIMITS.defaultHelperTtlMs;
      if (claudeCode) consumer.settingsMtimeMs = settingsMtimeMs(claudeSettingsFiles(process.env, cwd));
      return consumer;
    }
    pid = info.ppid;
  }
  return undefined;
}

/**
 * Claude Code's environment reached us through the shell, and the consumer process is claude:
 * the native binary, or node running the npm package. A tool Claude Code runs inherits the same
 * environment but is another process.
 */
const CLAUDE_NAME = new RegExp(`^${M.processName}\\b`, 'i');

function isClaudeCode(name: string, argv: () => string[]): boolean {
  const env = process.env;
  const envSaysClaude = Boolean(env[M.entrypointEnv]) || (env[M.agentEnv] ?? '').startsWith(M.agentPrefix);
  if (!envSaysClaude) return false;
  if (CLAUDE_NAME.test(name)) return true;
  return argv().some(
    (arg) => arg === M.processName || arg.endsWith(`/${M.processName}`) || arg.includes(M.packagePath),
  );
}

/**
 * How Claude Code ran us. The agent's Bash tool and apiKeyHelper both run under the claude
 * process, so the consumer alone cannot tell a 401 repeat from the agent checking its key twice;
 * the environment can (see ../../../shared/claude-code.md, "apiKeyHelper or the agent's Bash
 * tool?"). A Claude Code started from another one's Bash tool (nested) inherits that one's agent
 * markers — CLAUDECODE, CLAUDE_CODE_CHILD_SESSION, and CLAUDE_PID, the other's pid — and marks its
 * own helper AI_AGENT=…_harness (measured on 2.1.332): the harness marker with a CLAUDE_PID that is
 * not the consumer's is our claude's helper. Otherwise an agent marker wins over the harness marker.
 */
function invocationOf(env: NodeJS.ProcessEnv, format: Format, consumerPid: number): Invocation {
  const agent = env[M.agentEnv] ?? '';
  const claudePid = env[M.claudePidEnv];
  const helper = format === 'raw' ? 'api-key-helper' : 'sibling-helper';
  if (agent.endsWith(M.harnessSuffix) && claudePid && claudePid !== String(consumerPid)) return helper;
  if (env[M.claudeCodeEnv] === '1' || agent.endsWith(M.agentSuffix) || env[M.childSessionEnv] || claudePid)
    return 'agent-tool';
  if (agent.endsWith(M.harnessSuffix)) return helper;
  return 'unmarked';
}

/** The settings files a Claude Code session in `cwd` reads (whether or not they exist). */
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
