// The keybroker wire protocol, version 1: one request per connection, one JSON object per line.
// This module is imported by the shim, so it must use nothing beyond the language itself.

export const PROTOCOL_VERSION = 1;
/** A request line longer than this is refused without being parsed. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Clients refuse replies longer than this (a status reply for many profiles fits easily). */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;
/**
 * The longest `timeout:` a profile may have. The daemon enforces each profile's timeout; clients
 * wait this long plus a margin, so the daemon's own TIMEOUT reply (which names the slow source)
 * always arrives before a client gives up on the daemon.
 */
export const MAX_PROFILE_TIMEOUT_MS = 120_000;
/** How long a client waits for a reply that may involve a fetch: the longest timeout, plus a margin. */
export const CLIENT_REPLY_TIMEOUT_MS = MAX_PROFILE_TIMEOUT_MS + 5_000;

/**
 * What the shim says when no reply came within CLIENT_REPLY_TIMEOUT_MS, which is longer than any
 * profile's timeout: the source is slower than the daemon allows and the daemon did not say so,
 * or the daemon is stuck. The shim hands it to its client as the error for no reply.
 */
export function noAnswerError(timeoutMs: number = CLIENT_REPLY_TIMEOUT_MS): WireError {
  return {
    code: 'TIMEOUT',
    message: `no answer within ${Math.round(timeoutMs / 1000)} s, longer than any profile's timeout (at most ${MAX_PROFILE_TIMEOUT_MS / 1000} s): the source is still slow or the daemon is stuck`,
    transient: true,
    fix: 'run: keybroker status (then keybroker restart if it does not answer)',
  };
}

/** noAnswerError() rendered: the native shim's KB_MSG_NO_ANSWER is generated from this (scripts/native-header.mjs). */
export function noAnswerMessage(timeoutMs: number = CLIENT_REPLY_TIMEOUT_MS): string {
  return renderError(noAnswerError(timeoutMs));
}

/**
 * Stable error codes. Tests and scripts match on these, never on messages.
 * Each has its own exit status so `apiKeyHelper` callers can tell causes apart.
 */
export const ERROR_CODES = {
  INTERNAL: 1,
  USAGE: 2,
  DAEMON_UNREACHABLE: 3,
  UNKNOWN_PROFILE: 4,
  SOURCE_ERROR: 5,
  TIMEOUT: 6,
  KEY_REJECTED: 7,
  CONFIG_INVALID: 8,
  BAD_REQUEST: 9,
  NOT_FOUND: 10,
  PERMISSION_DENIED: 11,
  AUTH_REQUIRED: 12,
  UNAVAILABLE: 13,
  RATE_LIMITED: 14,
  INVALID_VALUE: 15,
  SHUTTING_DOWN: 16,
  ALREADY_RUNNING: 17,
  UNSAFE_PATH: 18,
  /** The value carried its own expiry (a JWT's exp, a lease), that has passed, and refreshing it failed. */
  EXPIRED: 19,
  /** The process ran out of something the OS limits: open files (EMFILE/ENFILE). */
  RESOURCE_EXHAUSTED: 20,
  /** Run from a place that can vanish (npx's cache), for a command that writes its path somewhere lasting. */
  NOT_INSTALLED: 21,
  /** `setup claude --adopt`: the source keybroker would read serves another value than the helper it replaces. */
  MISMATCH: 22,
  /**
   * The command runs inside an agent's sandbox (Claude Code's), which keeps it from the daemon's
   * socket by design: nothing to fix, and nothing to start there.
   */
  SANDBOXED: 23,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

export function exitCodeFor(code: string): number {
  return isErrorCode(code) ? ERROR_CODES[code] : ERROR_CODES.INTERNAL;
}

/** Who is asking: the nearest non-shell ancestor of the shim (Claude Code runs helpers via `sh -c`). */
export interface ConsumerInfo {
  pid: number;
  /** Process start time as the OS reports it; tells a reused pid from the original. */
  start?: string;
  /** Executable name, for status output. */
  name?: string;
  /** The consumer process is Claude Code and the shim's environment says so. */
  claudeCode: boolean;
  /**
   * The agent CLI the consumer process is, when it is one other than Claude Code (which
   * `claudeCode` names, as it did before this field): absent otherwise, so a request from Claude
   * Code or from no agent reads as it always has.
   */
  agent?: Agent;
  /**
   * How the agent ran the shim, from its environment and arguments; set only when `claudeCode`
   * or `agent` is. Only `api-key-helper` may count as a 401 repeat (see INVOCATIONS).
   */
  invocation?: Invocation;
  /**
   * How often the agent runs the shim on its own schedule: the shim's --refresh-interval-ms,
   * else CLAUDE_CODE_API_KEY_HELPER_TTL_MS as the consumer has it (default 5 minutes).
   */
  helperTtlMs?: number;
  /**
   * Set only when `claudeCode`: the newest modification time, in whole milliseconds since the
   * epoch, of the Claude Code settings files the session reads (user, project, local, managed;
   * 0 when none exists). Claude Code re-runs its helper when one changes, so a repeat with another
   * value here is not a 401 repeat.
   */
  settingsMtimeMs?: number;
}

/**
 * The agent CLIs the shims recognise (src/shim/consumer.ts has their markers). A repeat of the
 * auth command they run within its refresh interval means the key they hold was rejected.
 */
export const AGENTS = ['claude-code', 'codex'] as const;
export type Agent = (typeof AGENTS)[number];
/** How status, audit and doctor name each agent. */
export const AGENT_LABELS: Readonly<Record<Agent, string>> = { 'claude-code': 'Claude Code', codex: 'Codex' };

/** The agent CLI a consumer is, whichever field says so. */
export function agentOf(consumer: Pick<ConsumerInfo, 'claudeCode' | 'agent'>): Agent | undefined {
  return consumer.claudeCode ? 'claude-code' : consumer.agent;
}

/**
 * The shim's option that says how often its consumer runs it on schedule (`helperTtlMs`): what
 * `keybroker setup codex` writes beside Codex's refresh_interval_ms, which Codex does not pass on.
 */
export const REFRESH_INTERVAL_OPTION = '--refresh-interval-ms';
/** The largest `helperTtlMs` (and --refresh-interval-ms) accepted: a 32-bit timer's. */
export const MAX_HELPER_TTL_MS = 2_147_483_647;

/**
 * How an agent CLI ran the shim (measured on Claude Code 2.1.330 and Codex 0.169.0; these are the
 * agents' signals, not a documented contract):
 * - agent-tool: the agent's own shell tool (Claude Code's Bash tool: CLAUDECODE=1,
 *   AI_AGENT=…_agent, CLAUDE_CODE_CHILD_SESSION or CLAUDE_PID set; Codex's exec_command:
 *   CODEX_THREAD_ID and the like) — an ordinary read, whatever its timing;
 * - api-key-helper: the agent's key command (Claude Code's apiKeyHelper: AI_AGENT=…_harness, no
 *   agent marker, raw output; Codex's model provider auth command: no tool marker, and the
 *   --refresh-interval-ms that `setup codex` writes);
 * - sibling-helper: the harness running the shim with --format (otelHeadersHelper, MCP
 *   headersHelper, awsCredentialExport), each on its own schedule;
 * - unmarked: the consumer is the agent but neither marker is present (a release we have not
 *   seen, or a Codex auth command written without --refresh-interval-ms).
 */
export const INVOCATIONS = ['api-key-helper', 'sibling-helper', 'agent-tool', 'unmarked'] as const;
export type Invocation = (typeof INVOCATIONS)[number];

/** The longest accepted `cwd` (PATH_MAX on Linux). */
export const MAX_CWD_BYTES = 4096;

export interface GetRequest {
  v: 1;
  op: 'get';
  /** Sent only when the caller named a profile; without it the daemon picks one by `cwd`. */
  profile?: string;
  /** The caller's working directory (absolute): the daemon's `directories:` map picks the profile. */
  cwd?: string;
  /** Bypass the cache and fetch from the source now. */
  refresh?: boolean;
  consumer?: ConsumerInfo;
  /** Reply with a frame (./framed-reply.ts) instead of a JSON line: what the native shim reads. */
  framed?: boolean;
}

/**
 * A get request with its keys in the contract's order (v, op, profile, cwd, refresh, consumer), so
 * every client — shim, `keybroker get`, `keybroker run` — sends the same line. `profile` only when
 * the caller named one: then it wins over any directory.
 */
export function buildGetRequest(fields: {
  profile?: string | undefined;
  cwd?: string | undefined;
  refresh?: boolean | undefined;
  consumer?: ConsumerInfo | undefined;
}): GetRequest {
  const request: GetRequest = { v: 1, op: 'get' };
  if (fields.profile !== undefined) request.profile = fields.profile;
  if (fields.cwd !== undefined) request.cwd = fields.cwd;
  if (fields.refresh) request.refresh = true;
  if (fields.consumer !== undefined) request.consumer = fields.consumer;
  return request;
}

export interface RefreshRequest {
  v: 1;
  op: 'refresh';
  profile?: string;
  all?: boolean;
}

/** Drop cached values from memory now (ssh-agent -D); the next read fetches again. */
export interface ForgetRequest {
  v: 1;
  op: 'forget';
  profile?: string;
  all?: boolean;
}

export interface StatusRequest {
  v: 1;
  op: 'status';
}

export interface PingRequest {
  v: 1;
  op: 'ping';
}

/**
 * Serve this value for a profile from now on, without a fetch: `keybroker key set` has just stored
 * it at the profile's source. Only for sources keybroker can write (keyring:), and only when the
 * daemon's profile reads `source`, the source as the config writes it.
 */
export interface SetRequest {
  v: 1;
  op: 'set';
  profile: string;
  source: string;
  value: string;
}

export type Request = GetRequest | RefreshRequest | ForgetRequest | StatusRequest | PingRequest | SetRequest;
export type Op = Request['op'];
export const OPS: readonly Op[] = ['get', 'refresh', 'forget', 'status', 'ping', 'set'];

/**
 * An error as data: clients render it once, at the edge (shim, CLI, doctor), as
 * `profile "PROFILE": MESSAGE — FIX` with each absent part left out. Nothing parses `message` back.
 */
export interface WireError {
  code: string;
  /** What went wrong, for a person: without the profile prefix and without the fix. */
  message: string;
  /** True when retrying later may succeed (backend down, timeout). */
  transient?: boolean;
  /** The profile the error is about, when it is about one. */
  profile?: string;
  /** What to do about it, e.g. `run: keybroker status` or `chmod 600 ~/work.key, then run: keybroker refresh work`. */
  fix?: string;
}

export interface ErrorReply {
  v: 1;
  ok: false;
  error: WireError;
}

/**
 * How the daemon was started, which says how to restart it: through the service manager, or
 * (autostart) by asking it to exit so the next shim starts the new build.
 */
export type StartedBy = 'autostart' | 'systemd' | 'launchd' | 'foreground';
export const STARTED_BY: readonly StartedBy[] = ['autostart', 'systemd', 'launchd', 'foreground'];

/** Which daemon answered, on every successful reply, so a client notices an older one after an upgrade. */
export interface DaemonIdentity {
  pid: number;
  version: string;
  /** The build id (a hash of the built files); absent for a daemon run from unbuilt sources. */
  build?: string;
  startedBy?: StartedBy;
}

/** How the daemon picked the profile of a get: named by the caller, by `directories:`, or `default`. */
export type ProfileChoice = 'argument' | 'directory' | 'default';

export interface GetReply {
  v: 1;
  ok: true;
  /** The profile served (the one named, or the one the working directory maps to). */
  profile: string;
  chosenBy: ProfileChoice;
  /** The `directories:` entry that chose it, as written (chosenBy "directory"). */
  directory?: string;
  value: string;
  /** Served from cache past its TTL because the source is failing. */
  stale: boolean;
  /** Source kind, e.g. "exec". */
  source: string;
  /** Milliseconds until the value is due for refresh (negative when stale). */
  expiresInMs: number;
  /** Why the value is stale, when it is. */
  warning?: WireError;
  daemon?: DaemonIdentity;
}

export interface RefreshReply {
  v: 1;
  ok: true;
  refreshed: string[];
  failed: Array<{ profile: string; error: WireError }>;
  daemon?: DaemonIdentity;
}

export interface ForgetReply {
  v: 1;
  ok: true;
  /** The profiles whose values were dropped. */
  forgotten: string[];
}

export interface SetReply {
  v: 1;
  ok: true;
  profile: string;
  /** The value differs from the one the daemon held (null: it held none). */
  changed: boolean | null;
  daemon?: DaemonIdentity;
}

export type ProfileState = 'cold' | 'fresh' | 'stale' | 'expired' | 'error';

export interface ProfileStatus {
  name: string;
  kind: string;
  /** A description of the source safe to print: never a value, never a token. */
  source: string;
  state: ProfileState;
  ttlMs: number;
  ageMs: number | null;
  /** Milliseconds the cached value stays fresh (negative once past its TTL): "fresh for". */
  expiresInMs: number | null;
  /**
   * Milliseconds until the value itself stops working (a JWT's exp, exec JSON expiresAt, AWS
   * credentials' Expiration), negative once it has; null when the value carries no expiry.
   * Absent from a daemon older than the field.
   */
  valueExpiresInMs?: number | null;
  /**
   * Milliseconds until the backend allows the next try after a rate limit (429 Retry-After);
   * null when not rate limited. Absent from a daemon older than the field.
   */
  rateLimitedForMs?: number | null;
  hits: number;
  misses: number;
  fetches: number;
  consumers: number;
  /**
   * Of `consumers`, Claude Code processes whose shim showed neither the apiKeyHelper nor the
   * Bash-tool marker: repeat detection does not apply to them under `repeatDetection: claude-code`.
   */
  unmarkedClaudeConsumers?: number;
  /** Forced fetches (refreshes, suspected rejections) refused by the profile's rate limit. */
  forcedFetchesLimited?: number;
  lastError: (WireError & { atMs: number }) | null;
  /**
   * The daemon refused this profile's key as rejected (KEY_REJECTED: a consumer came back twice
   * with a 401 for the same value and the source still returns it); null once a fetch brings a
   * different value (or `keybroker forget`). Absent from a daemon older than the field.
   */
  rejected?: RejectionStatus | null;
  /** Defined by the managed (organisation) config; a user's profile of that name is ignored. */
  managed?: boolean;
}

/** A key the daemon refused as rejected, for status and doctor (never the value). */
export interface RejectionStatus {
  /** When the daemon first refused it (ms since the epoch). */
  atMs: number;
  /** The consumer it last refused it to (the Claude Code process, for apiKeyHelper). */
  consumer: { pid: number; name?: string };
  /** Requests refused since then. */
  requests: number;
}

export interface SourceStatus {
  kind: string;
  /** Short, non-secret facts an adapter wants shown, e.g. a read budget. */
  notes: string[];
}

/** The audit trail's health, for `keybroker status` (never a record's content). */
export interface AuditStatus {
  enabled: boolean;
  file: string;
  /** Records appended since the daemon started. */
  written: number;
  /** Appends (write calls) those took: records go out in batches. */
  writes: number;
  /** Records lost: buffer full, or a write that failed. */
  dropped: number;
  /** The last write problem (disk full, unsafe directory), until a write succeeds again. */
  lastError: (Pick<WireError, 'code' | 'message' | 'fix'> & { atMs: number }) | null;
}

/**
 * The daemon's hardening (docs/security.md): what its hardening addon, a small native module built
 * at install time where a C compiler exists, gave it.
 */
export interface DaemonHardening {
  /** The hardening addon is loaded. */
  addon: boolean;
  /**
   * Processes running as you cannot attach a debugger or read /proc/PID/mem and /proc/PID/environ
   * (Linux: PR_SET_DUMPABLE 0; macOS: PT_DENY_ATTACH, which covers debuggers only).
   */
  nonDumpable: boolean;
  /** The core-file limit is 0. */
  coreLimitZero: boolean;
  /**
   * Each connection's pid, uid and executable come from the kernel, and a client's claim about its
   * consumer is checked against them (the audit trail records both).
   */
  peerCredentials: boolean;
  /** What is missing and why, one line each, with what to do. */
  problems: string[];
}

/** One `directories:` entry, as status and doctor show it. */
export interface DirectoryStatus {
  /** As written in the config (`~/code/acme`). */
  dir: string;
  /** Resolved: absolute, symlinks followed. */
  path: string;
  profile: string;
}

export interface StatusReply {
  v: 1;
  ok: true;
  daemon: {
    pid: number;
    version: string;
    build?: string;
    startedBy?: StartedBy;
    uptimeMs: number;
    socket: string;
    config: string;
    configLoadedAtMs: number;
    /** Reload attempts so far (SIGHUP); tells a client its reload has been handled. */
    reloads: number;
    lastReloadError: string | null;
    /** The managed config file in use or ignored (null: none). */
    managedConfig?: string | null;
    /** Why the managed config is ignored (not owned by root, writable by others …). */
    managedConfigError?: string | null;
    /**
     * Names (never values) of the environment variables the daemon and its sources see: a daemon
     * keeps the environment of whoever started it.
     */
    envNames?: string[];
    /** What the daemon did to keep its memory its own and know who asks. Absent from a daemon older than the field. */
    hardening?: DaemonHardening;
  };
  profiles: ProfileStatus[];
  sources: SourceStatus[];
  /** The `directories:` map as the daemon resolved it. Absent from a daemon older than the field. */
  directories?: DirectoryStatus[];
  /** The audit trail's health. Absent from a daemon older than the field. */
  audit?: AuditStatus;
  /** OpenTelemetry export, when the config has a `telemetry:` block (docs/telemetry.md). */
  telemetry?: TelemetryStatus;
}

/** The OpenTelemetry export's health, for `keybroker status` (never what it sent). */
export interface TelemetryStatus {
  /** Where it sends: the metrics and logs URLs, without any user:password part. */
  metrics: string | null;
  logs: string | null;
  /** The endpoint and headers may come from OTEL_EXPORTER_OTLP_* (a service-started daemon). */
  fromEnvironment: boolean;
  /** Fingerprints are made under the organisation's salt (`telemetry.salt`), not this installation's. */
  orgSalt: boolean;
  /**
   * Audit records waiting to be sent (at most a fixed bound), sent, and dropped (the queue full, or
   * the collector failing after the retries).
   */
  logRecords: { waiting: number; exported: number; dropped: number };
  /** Metric exports that succeeded and that failed (the next one carries the totals again). */
  metricExports: { ok: number; failed: number };
  /** The last problem (collector down, a header's profile failing), until an export succeeds. */
  lastError: { code: string; message: string; atMs: number } | null;
}

export interface PingReply {
  v: 1;
  ok: true;
  pong: true;
  pid: number;
  version: string;
  build?: string;
  startedBy?: StartedBy;
}

export type Reply = ErrorReply | GetReply | RefreshReply | ForgetReply | StatusReply | PingReply | SetReply;

/** An error reply; `fields` are the error's optional fields (transient, profile, fix). */
export function errorReply(
  code: string,
  message: string,
  fields: Omit<WireError, 'code' | 'message'> = {},
): ErrorReply {
  return { v: 1, ok: false, error: { code, message, ...fields } };
}

/**
 * An error as one line for a person, the only place one is put together:
 * `profile "PROFILE": MESSAGE — FIX`, each absent part left out. Only string fields count (a
 * reply is whatever the daemon sent); the native shim renders replies the same way.
 */
export function renderError(error: Pick<WireError, 'message' | 'profile' | 'fix'>): string {
  const { message, profile, fix } = error as { message: unknown; profile?: unknown; fix?: unknown };
  let line = typeof message === 'string' ? message : '';
  if (typeof profile === 'string' && profile !== '') line = `profile "${profile}": ${line}`;
  if (typeof fix === 'string' && fix !== '') line = `${line} — ${fix}`;
  return line;
}

/** Encode one message as a protocol line. */
export function encodeLine(message: object): string {
  return JSON.stringify(message) + '\n';
}
