// What the daemon does with each well-formed request.
import type { AuditEvent, AuditLog } from '../audit/audit-log.js';
import type { ConsumerRelation } from '../audit/audit-record.js';
import type { Broker } from '../cache/broker.js';
import type { GetNote } from '../cache/profile-cache.js';
import type { DirectoryChooser } from '../config/directories.js';
import { BrokerError } from '../errors.js';
import type {
  ConsumerInfo,
  DaemonIdentity,
  GetReply,
  GetRequest,
  Reply,
  Request,
  StatusReply,
} from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';
import type { PeerCredentials, PeerIdentifier } from './peer-identity.js';

/** A get reply still holding the secret; the writer reveals it, nothing else does. */
export type ValueReply = Omit<GetReply, 'value'> & { value: SecretValue };

/** The protocol's replies, with the get reply's value not yet revealed. */
export type DaemonReply = Exclude<Reply, GetReply> | ValueReply;

export type DaemonInfo = StatusReply['daemon'];

export interface HandlerContext {
  broker: Broker;
  directories: DirectoryChooser;
  audit: AuditLog;
  version: string;
  now: () => number;
  info(): DaemonInfo;
  /** Which daemon this is (version, build, how it was started), sent with every reply that succeeds. */
  identity?(): DaemonIdentity;
  /** Set while the config could not be loaded at start-up: gets answer with it. */
  configError(): BrokerError | undefined;
  /** With the hardening addon: describes a connection's peer and checks consumer claims against it. */
  peers?: PeerIdentifier | undefined;
}

/** `peer`: who connected, as the kernel says (undefined without the hardening addon). */
export async function handleRequest(
  request: Request,
  ctx: HandlerContext,
  peer?: PeerCredentials | undefined,
): Promise<DaemonReply> {
  switch (request.op) {
    case 'ping':
      return { v: 1, ok: true, pong: true, ...(ctx.identity?.() ?? { pid: process.pid, version: ctx.version }) };
    case 'status':
      return {
        v: 1,
        ok: true,
        daemon: ctx.info(),
        profiles: ctx.broker.status(),
        sources: await ctx.broker.sourceStatuses(),
        directories: ctx.directories.rules.map((r) => ({ dir: r.dir, path: r.path, profile: r.profile })),
        audit: ctx.audit.status(),
      };
    case 'get':
      return handleGet(request, ctx, peer);
    case 'refresh': {
      if (request.profile === undefined && !request.all) {
        throw new BrokerError('BAD_REQUEST', 'refresh needs a profile or "all": true');
      }
      if (request.profile !== undefined) checkConfigLoaded(ctx, request.profile);
      const names = request.all ? ctx.broker.profileNames() : [request.profile!];
      const result = await ctx.broker.refresh(names, (profile, r) => {
        const event: AuditEvent = {
          op: 'refresh',
          profile,
          chosenBy: 'argument',
          ...identify(ctx, peer, undefined),
          outcome: 'error' in r ? 'error' : 'fetched',
        };
        if ('error' in r) event.error = r.error.code;
        else event.served = r;
        ctx.audit.record(event);
      });
      return { v: 1, ok: true, ...result, ...(ctx.identity && { daemon: ctx.identity() }) };
    }
    case 'forget': {
      if ((request.profile === undefined) === !request.all) {
        throw new BrokerError('BAD_REQUEST', 'forget needs either a profile or "all": true');
      }
      if (request.profile !== undefined) checkConfigLoaded(ctx, request.profile);
      const names = request.all ? ctx.broker.profileNames() : [request.profile!];
      return { v: 1, ok: true, forgotten: ctx.broker.forget(names) };
    }
  }
}

async function handleGet(
  request: GetRequest,
  ctx: HandlerContext,
  peer: PeerCredentials | undefined,
): Promise<ValueReply> {
  const choice = await ctx.directories.choose(request.profile, request.cwd);
  const event: AuditEvent = { op: 'get', profile: choice.profile, chosenBy: choice.chosenBy, outcome: 'error' };
  if (choice.rule) event.directory = choice.rule.dir;
  if (request.cwd !== undefined) event.cwd = request.cwd;
  if (request.consumer) event.consumer = auditConsumer(request.consumer);
  Object.assign(event, identify(ctx, peer, request.consumer));
  const note: GetNote = {};
  try {
    checkConfigLoaded(ctx, choice.profile);
    const cache = ctx.broker.profile(choice.profile);
    event.source = cache.profile.scheme;
    const served = await cache.get({
      consumer: request.consumer,
      claimConfirmed: event.consumerIs === undefined ? undefined : isConfirmed(event.consumerIs),
      refresh: request.refresh,
      note,
    });
    event.outcome = served.outcome;
    event.served = served;
    event.rejected = note.rejected;
    ctx.audit.record(event);
    const reply: ValueReply = {
      v: 1,
      ok: true,
      profile: choice.profile,
      chosenBy: choice.chosenBy,
      value: served.value,
      stale: served.stale,
      source: cache.profile.scheme,
      expiresInMs: served.freshUntil - ctx.now(),
    };
    if (choice.rule) reply.directory = choice.rule.dir;
    if (served.warning) reply.warning = served.warning.toWire();
    if (ctx.identity) reply.daemon = ctx.identity();
    return reply;
  } catch (err) {
    event.error = err instanceof BrokerError ? err.code : 'INTERNAL';
    event.rejected = note.rejected;
    ctx.audit.record(event);
    // The server prefixes the profile of a request that named one; name the one chosen here.
    if (err instanceof BrokerError && choice.chosenBy !== 'argument') {
      const named = withProfile(err, choice.profile);
      if (
        choice.chosenBy === 'default' &&
        err.code === 'UNKNOWN_PROFILE' &&
        request.cwd !== undefined &&
        ctx.directories.rules.length > 0
      ) {
        throw new BrokerError(
          'UNKNOWN_PROFILE',
          `${named.message}; no directories: entry matches ${request.cwd} — add one, or a "default" profile`,
        );
      }
      throw named;
    }
    throw err;
  }
}

/**
 * The kernel's side of who asked, for the trail: the peer (with its executable while the trail is
 * on), and how a claimed consumer relates to it. Empty without the addon: claims are then taken
 * as they come, as before it existed.
 */
function identify(
  ctx: HandlerContext,
  peer: PeerCredentials | undefined,
  claim: ConsumerInfo | undefined,
): Pick<AuditEvent, 'peer' | 'consumerIs'> {
  if (!ctx.peers) return {};
  // The kernel would not say who connected (a peer in a PID namespace we cannot see into): a
  // claim cannot be confirmed then, so it is not taken.
  if (!peer) return claim ? { consumerIs: 'unknown' } : {};
  return claim ? { peer, consumerIs: ctx.peers.relate(peer, claim) } : { peer };
}

/** Only a claim the kernel confirms may change what the repeat rule remembers about a consumer. */
function isConfirmed(relation: ConsumerRelation): boolean {
  return relation === 'peer' || relation === 'ancestor';
}

/** What the trail keeps about a consumer: who it is, not its TTL bookkeeping. */
function auditConsumer(c: ConsumerInfo): NonNullable<AuditEvent['consumer']> {
  const out: NonNullable<AuditEvent['consumer']> = { pid: c.pid, claudeCode: c.claudeCode };
  if (c.name !== undefined) out.name = c.name;
  if (c.invocation !== undefined) out.invocation = c.invocation;
  return out;
}

/** The same error, its message prefixed with the profile (once). */
export function withProfile(err: BrokerError, profile: string): BrokerError {
  const message = prefixProfile(err.code, err.message, profile);
  if (message === err.message) return err;
  return new BrokerError(err.code, message, { transient: err.transient, status: err.status });
}

function prefixProfile(code: string, message: string, profile: string): string {
  if (code === 'UNKNOWN_PROFILE' || code === 'CONFIG_INVALID' || message.startsWith('profile "')) return message;
  return `profile "${profile}": ${message}`;
}

function checkConfigLoaded(ctx: HandlerContext, profile: string): void {
  const error = ctx.configError();
  if (error && !ctx.broker.profileNames().includes(profile)) throw error;
}

/** Encode a reply line. The only place a secret is revealed. */
export function encodeReply(reply: DaemonReply): string {
  if ('value' in reply) return JSON.stringify({ ...reply, value: reply.value.reveal() }) + '\n';
  return JSON.stringify(reply) + '\n';
}

/** An error reply for a request that failed, prefixing the profile when the message lacks it. */
export function errorReplyFor(err: BrokerError, profile: string | undefined): DaemonReply {
  const wire = err.toWire();
  if (profile !== undefined) wire.message = prefixProfile(err.code, wire.message, profile);
  return { v: 1, ok: false, error: wire };
}
