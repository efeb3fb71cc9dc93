// The load generator: N clients, each in a loop of connect, one request, read the reply, close —
// the way shims arrive at the daemon (never a kept-alive connection). The clients run in this
// process with the real protocol client, and the same code loads the daemon and the floor
// server, so whatever the client costs is in both figures and cancels out of the ratio.
import { sendRequest } from '../src/client/client.js';
import type { Reply, Request } from '../src/protocol/messages.js';

export interface LoadOptions {
  socketPath: string;
  clients: number;
  durationMs: number;
  request: Request;
  /** Undefined when the reply is what was asked for; else why not (never the value itself). */
  check(reply: Reply): string | undefined;
}

export interface LoadResult {
  ok: number;
  errors: number;
  /** From the first request sent to the last reply received, tail included. */
  elapsedMs: number;
  /** One entry per good reply, in milliseconds. */
  latenciesMs: number[];
  firstError: string | undefined;
}

const REQUEST_TIMEOUT_MS = 10_000;

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const result: LoadResult = { ok: 0, errors: 0, elapsedMs: 0, latenciesMs: [], firstError: undefined };
  const started = performance.now();
  const deadline = started + options.durationMs;
  const client = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const sent = performance.now();
      const reply = await sendRequest(options.socketPath, options.request, { timeoutMs: REQUEST_TIMEOUT_MS });
      const took = performance.now() - sent;
      const wrong = options.check(reply);
      if (wrong === undefined) {
        result.ok++;
        result.latenciesMs.push(took);
      } else {
        result.errors++;
        result.firstError ??= wrong;
      }
    }
  };
  await Promise.all(Array.from({ length: options.clients }, client));
  result.elapsedMs = performance.now() - started;
  return result;
}

/** Add up slices of the same target measured at different times. */
export function mergeLoads(results: readonly LoadResult[]): LoadResult {
  const merged: LoadResult = { ok: 0, errors: 0, elapsedMs: 0, latenciesMs: [], firstError: undefined };
  for (const r of results) {
    merged.ok += r.ok;
    merged.errors += r.errors;
    merged.elapsedMs += r.elapsedMs;
    for (const ms of r.latenciesMs) merged.latenciesMs.push(ms);
    merged.firstError ??= r.firstError;
  }
  return merged;
}
