// What the daemon does with each well-formed request.
import type { Broker } from '../cache/broker.js';
import { BrokerError } from '../errors.js';
import type { ProfileStatus, Request, SourceStatus, StatusReply, WireError } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';

/** A get reply still holding the secret; the writer reveals it, nothing else does. */
export interface ValueReply {
  v: 1;
  ok: true;
  profile: string;
  value: SecretValue;
  stale: boolean;
  source: string;
  expiresInMs: number;
  warning?: WireError;
}

export type DaemonReply =
  | ValueReply
  | { v: 1; ok: false; error: WireError }
  | { v: 1; ok: true; pong: true; pid: number; version: string }
  | { v: 1; ok: true; refreshed: string[]; failed: Array<{ profile: string; error: WireError }> }
  | { v: 1; ok: true; daemon: DaemonInfo; profiles: ProfileStatus[]; sources: SourceStatus[] };

export type DaemonInfo = StatusReply['daemon'];

export interface HandlerContext {
  broker: Broker;
  version: string;
  now: () => number;
  info(): DaemonInfo;
  /** Set while the config could not be loaded at start-up: gets answer with it. */
  configError(): BrokerError | undefined;
}

export async function handleRequest(request: Request, ctx: HandlerContext): Promise<DaemonReply> {
  switch (request.op) {
    case 'ping':
      return { v: 1, ok: true, pong: true, pid: process.pid, version: ctx.version };
    case 'status':
      return { v: 1, ok: true, daemon: ctx.info(), profiles: ctx.broker.status(), sources: await ctx.broker.sourceStatuses() };
    case 'get': {
      checkConfigLoaded(ctx, request.profile);
      const cache = ctx.broker.profile(request.profile);
      const served = await cache.get({ consumer: request.consumer, refresh: request.refresh });
      const reply: ValueReply = {
        v: 1,
        ok: true,
        profile: request.profile,
        value: served.value,
        stale: served.stale,
        source: cache.profile.scheme,
        expiresInMs: served.freshUntil - ctx.now(),
      };
      if (served.warning) reply.warning = served.warning.toWire();
      return reply;
    }
    case 'refresh': {
      if (request.profile === undefined && !request.all) {
        throw new BrokerError('BAD_REQUEST', 'refresh needs a profile or "all": true');
      }
      if (request.profile !== undefined) checkConfigLoaded(ctx, request.profile);
      const names = request.all ? ctx.broker.profileNames() : [request.profile!];
      const result = await ctx.broker.refresh(names);
      return { v: 1, ok: true, ...result };
    }
  }
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
  if (profile !== undefined && err.code !== 'UNKNOWN_PROFILE' && err.code !== 'CONFIG_INVALID' && !wire.message.startsWith('profile "')) {
    wire.message = `profile "${profile}": ${wire.message}`;
  }
  return { v: 1, ok: false, error: wire };
}
