// What the daemon does with each well-formed request.
import type { AuditEvent, AuditLog } from '../audit/audit-log.js';
import type { ConsumerRelation } from '../audit/audit-record.js';
import type { Broker } from '../cache/broker.js';
import type { GetNote } from '../cache/profile-cache.js';
import type { DirectoryChooser } from '../config/directories.js';
import { daemonIdentity } from '../client/build-info.js';
import { BrokerError } from '../errors.js';
import { encodeFrame, type FrameField } from '../protocol/framed-reply.js';
import {
  exitCodeFor,
  type ConsumerInfo,
  type DaemonIdentity,
  type ForgetReply,
  type ForgetRequest,
  type GetReply,
  type GetRequest,
  type Reply,
  type Request,
  type SetReply,
  type SetRequest,
  type StatusReply,
  type TelemetryStatus,
  type WireError,
} from '../protocol/messages.js';
import { SecretValue } from '../secret.js';
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
  /** OpenTelemetry export, for status. */
  telemetry?: { status(): TelemetryStatus | undefined };
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
        ...telemetryStatus(ctx),
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
    case 'forget':
      return handleForget(request, ctx, peer);
    case 'set':
      return handleSet(request, ctx, peer);
  }
}

/**
 * Drop profiles' values now. Never refused for being frequent: the fetch that follows draws on the
 * profile's forced-fetch limit instead (ProfileCache.forget). Each profile forgotten is audited,
 * and so is a forget of a profile the daemon does not serve.
 */
function handleForget(request: ForgetRequest, ctx: HandlerContext, peer: PeerCredentials | undefined): ForgetReply {
  if ((request.profile === undefined) === !request.all) {
    throw new BrokerError('BAD_REQUEST', 'forget needs either a profile or "all": true');
  }
  const record = (profile: string, fields: Pick<AuditEvent, 'outcome' | 'error' | 'source'>): void =>
    ctx.audit.record({ op: 'forget', profile, chosenBy: 'argument', ...identify(ctx, peer, undefined), ...fields });
  let forgotten: string[];
  try {
    if (request.profile !== undefined) checkConfigLoaded(ctx, request.profile);
    forgotten = ctx.broker.forget(request.all ? ctx.broker.profileNames() : [request.profile!]);
  } catch (err) {
    if (request.profile !== undefined)
      record(request.profile, { outcome: 'error', error: err instanceof BrokerError ? err.code : 'INTERNAL' });
    throw err;
  }
  for (const profile of forgotten)
    record(profile, { outcome: 'forgotten', source: ctx.broker.profile(profile).profile.scheme });
  return { v: 1, ok: true, forgotten };
}

/**
 * A value `keybroker key set` stored at a keyring: profile's entry, served from now on. Whoever can
 * connect to the socket may send one; that is the user who owns it (docs/security.md).
 */
function handleSet(request: SetRequest, ctx: HandlerContext, peer: PeerCredentials | undefined): SetReply {
  const event: AuditEvent = {
    op: 'set',
    profile: request.profile,
    chosenBy: 'argument',
    ...identify(ctx, peer, undefined),
    outcome: 'error',
  };
  try {
    checkConfigLoaded(ctx, request.profile);
    event.source = ctx.broker.profile(request.profile).profile.scheme;
    const value = SecretValue.fromString(request.value);
    const { changed } = ctx.broker.install(request.profile, request.source, value);
    event.outcome = 'installed';
    event.served = { value, version: undefined };
    return { v: 1, ok: true, profile: request.profile, changed, ...(ctx.identity && { daemon: ctx.identity() }) };
  } catch (err) {
    event.error = err instanceof BrokerError ? err.code : 'INTERNAL';
    throw err;
  } finally {
    ctx.audit.record(event);
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
    // The server names the profile of a request that named one; name the one chosen here.
    if (err instanceof BrokerError && choice.chosenBy !== 'argument') {
      if (
        choice.chosenBy === 'default' &&
        err.code === 'UNKNOWN_PROFILE' &&
        request.cwd !== undefined &&
        ctx.directories.rules.length > 0
      ) {
        throw new BrokerError('UNKNOWN_PROFILE', `${err.message}; no directories: entry matches ${request.cwd}`, {
          fix: 'add one, or a "default" profile',
        });
      }
      throw withProfile(err, choice.profile);
    }
    throw err;
  }
}

function telemetryStatus(ctx: HandlerContext): { telemetry?: TelemetryStatus } {
  const status = ctx.telemetry?.status();
  return status ? { telemetry: status } : {};
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
  if (c.agent !== undefined) out.agent = c.agent;
  if (c.invocation !== undefined) out.invocation = c.invocation;
  return out;
}

/**
 * The same error, about `profile` unless it already names one. An unknown profile's or a config
 * error's message is about the name or the file, not a profile's source, so it gets none.
 */
export function withProfile(err: BrokerError, profile: string): BrokerError {
  if (err.profile !== undefined || err.code === 'UNKNOWN_PROFILE' || err.code === 'CONFIG_INVALID') return err;
  return err.with({ profile });
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

/**
 * Encode a reply to a get that asked for a frame (../protocol/framed-reply.ts): the value, the
 * stale warning the shim prints and the daemon's identity; or the error with its exit status.
 * A reply of any other kind (not a get's) has no frame: undefined.
 */
export function encodeFramedReply(reply: DaemonReply): Buffer | undefined {
  const fields: Array<[FrameField, string]> = [];
  const add = (prefix: 'warning' | 'error', e: WireError): void => {
    if (prefix === 'error') fields.push(['error.code', e.code], ['error.status', String(exitCodeFor(e.code))]);
    fields.push([`${prefix}.message`, e.message]);
    if (e.profile !== undefined) fields.push([`${prefix}.profile`, e.profile]);
    if (e.fix !== undefined) fields.push([`${prefix}.fix`, e.fix]);
  };
  if (!reply.ok) {
    add('error', reply.error);
    return encodeFrame(fields);
  }
  if (!('value' in reply)) return undefined;
  fields.push(['value', reply.value.reveal()]);
  if (reply.stale && reply.warning) add('warning', reply.warning);
  // The identity the clients accept (its shape is checked, as they check a JSON reply's).
  const d = daemonIdentity(reply.daemon);
  if (d) {
    fields.push(['daemon.pid', String(d.pid)], ['daemon.version', d.version]);
    if (d.build !== undefined) fields.push(['daemon.build', d.build]);
    if (d.startedBy !== undefined) fields.push(['daemon.startedBy', d.startedBy]);
  }
  return encodeFrame(fields);
}

/** An error reply for a request that failed, about the profile the request named (see withProfile). */
export function errorReplyFor(err: BrokerError, profile: string | undefined): DaemonReply {
  return { v: 1, ok: false, error: (profile === undefined ? err : withProfile(err, profile)).toWire() };
}
