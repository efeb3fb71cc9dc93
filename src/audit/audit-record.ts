// The audit trail's record: one JSON line per get, refresh, rejection, key set and forget — who asked (as
// the client claims it and, with the hardening addon, as the kernel reports it), from where, which
// profile (and why that one), what happened, and which version of the key went out. Never a
// value: a version is the source's own label, or a salted fingerprint (see audit-log.ts).
import path from 'node:path';
import type { Agent, Invocation, ProfileChoice } from '../protocol/messages.js';
import { defaultStateDir } from '../client/socket-path.js';

export const AUDIT_FILE = 'audit.jsonl';
/** The one previous file kept by rotation. */
export const AUDIT_PREVIOUS_FILE = `${AUDIT_FILE}.1`;
export const AUDIT_SALT_FILE = 'audit.salt';

/**
 * How a request ended: served from memory, fetched, refetched after a suspected rejection, stale,
 * a value installed by `keybroker key set` (op set), a value dropped by `keybroker forget` (op
 * forget), or an error.
 */
export type AuditOutcome = 'hit' | 'fetched' | 'refetched' | 'stale' | 'installed' | 'forgotten' | 'error';

/** Which version of a key: the source's own label where it has one, else a salted fingerprint. */
export interface KeyVersion {
  version?: string;
  fingerprint?: string;
}

/**
 * The process on the other end of the connection, as the kernel reports it (the hardening addon):
 * who really asked, whatever the request says.
 */
export interface AuditPeer {
  pid: number;
  uid: number;
  /** The file it runs (/proc/PID/exe; proc_pidpath on macOS), when that could be read. */
  exe?: string;
}

/**
 * How the consumer a client claims relates to the connection's peer: the peer itself (`keybroker
 * run`), one of its ancestors (the shim's Claude Code), neither (a false claim), or unknown (the
 * peer was gone before it could be checked, or the kernel did not name it).
 */
export type ConsumerRelation = 'peer' | 'ancestor' | 'unrelated' | 'unknown';

export interface AuditRecord extends KeyVersion {
  /** RFC 3339, UTC, milliseconds. */
  time: string;
  op: 'get' | 'refresh' | 'set' | 'forget';
  profile: string;
  chosenBy: ProfileChoice;
  /** The `directories:` entry that chose the profile, as written. */
  directory?: string;
  /** The working directory the client sent. */
  cwd?: string;
  consumer?: {
    pid: number;
    name?: string;
    claudeCode: boolean;
    agent?: Agent;
    invocation?: Invocation;
  };
  /** With the hardening addon: the kernel's word on who asked. */
  peer?: AuditPeer;
  /** With the hardening addon, when a consumer was claimed: how it relates to the peer. */
  consumerIs?: ConsumerRelation;
  outcome: AuditOutcome;
  /** The error code, when outcome is error. */
  error?: string;
  /** The source kind (exec, vault, aws-sm …). */
  source?: string;
  /** The version the consumer held when its repeat request suggested a rejection. */
  rejected?: KeyVersion;
}

/**
 * Where the trail lives: the per-user state directory ($XDG_STATE_HOME/keybroker, else
 * ~/.local/state/keybroker; on macOS ~/Library/Application Support/keybroker) — the same place
 * as the fallback socket, so one private directory holds keybroker's state.
 */
export function auditDir(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  home?: string,
): string {
  return defaultStateDir(platform, home ?? env.HOME ?? undefined, env);
}

export function auditFile(dir: string): string {
  return path.join(dir, AUDIT_FILE);
}
