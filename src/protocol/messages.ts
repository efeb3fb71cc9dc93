// The keybroker wire protocol, version 1: one request per connection, one JSON object per line.
// This module is imported by the shim, so it must use nothing beyond the language itself.

export const PROTOCOL_VERSION = 1;
/** A request line longer than this is refused without being parsed. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Clients refuse replies longer than this (a status reply for many profiles fits easily). */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;

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
  /** The helper's environment says it was started by Claude Code. */
  claudeCode: boolean;
  /** CLAUDE_CODE_API_KEY_HELPER_TTL_MS as the consumer has it (default 5 minutes). */
  helperTtlMs?: number;
}

export interface GetRequest {
  v: 1;
  op: 'get';
  profile: string;
  /** Bypass the cache and fetch from the source now. */
  refresh?: boolean;
  consumer?: ConsumerInfo;
}

export interface RefreshRequest {
  v: 1;
  op: 'refresh';
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

export type Request = GetRequest | RefreshRequest | StatusRequest | PingRequest;
export type Op = Request['op'];
export const OPS: readonly Op[] = ['get', 'refresh', 'status', 'ping'];

export interface WireError {
  code: string;
  message: string;
  /** True when retrying later may succeed (backend down, timeout). */
  transient?: boolean;
}

export interface ErrorReply {
  v: 1;
  ok: false;
  error: WireError;
}

export interface GetReply {
  v: 1;
  ok: true;
  profile: string;
  value: string;
  /** Served from cache past its TTL because the source is failing. */
  stale: boolean;
  /** Source kind, e.g. "exec". */
  source: string;
  /** Milliseconds until the value is due for refresh (negative when stale). */
  expiresInMs: number;
  /** Why the value is stale, when it is. */
  warning?: WireError;
}

export interface RefreshReply {
  v: 1;
  ok: true;
  refreshed: string[];
  failed: Array<{ profile: string; error: WireError }>;
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
  expiresInMs: number | null;
  hits: number;
  misses: number;
  fetches: number;
  consumers: number;
  lastError: (WireError & { atMs: number }) | null;
}

export interface SourceStatus {
  kind: string;
  /** Short, non-secret facts an adapter wants shown, e.g. a read budget. */
  notes: string[];
}

export interface StatusReply {
  v: 1;
  ok: true;
  daemon: {
    pid: number;
    version: string;
    uptimeMs: number;
    socket: string;
    config: string;
    configLoadedAtMs: number;
    /** Reload attempts so far (SIGHUP); tells a client its reload has been handled. */
    reloads: number;
    lastReloadError: string | null;
  };
  profiles: ProfileStatus[];
  sources: SourceStatus[];
}

export interface PingReply {
  v: 1;
  ok: true;
  pong: true;
  pid: number;
  version: string;
}

export type Reply = ErrorReply | GetReply | RefreshReply | StatusReply | PingReply;

export function errorReply(code: string, message: string, transient?: boolean): ErrorReply {
  const error: WireError = { code, message };
  if (transient !== undefined) error.transient = transient;
  return { v: 1, ok: false, error };
}

/** Encode one message as a protocol line. */
export function encodeLine(message: object): string {
  return JSON.stringify(message) + '\n';
}
