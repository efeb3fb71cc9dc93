// Decoding and validating one request line. Everything a client can send is checked here, so the
// rest of the daemon sees only well-formed requests.
import { z } from 'zod';
import { BrokerError } from '../errors.js';
import { FRAMED_FLAG } from '../protocol/framed-reply.js';
import {
  AGENTS,
  INVOCATIONS,
  MAX_CWD_BYTES,
  MAX_HELPER_TTL_MS,
  OPS,
  PROTOCOL_VERSION,
  type Request,
} from '../protocol/messages.js';

const profileName = z.string().min(1).max(64);
/** A set request's value: the whole line is at most MAX_REQUEST_BYTES. */
const MAX_SET_VALUE_CHARS = 32 * 1024;

const consumer = z.strictObject({
  pid: z.number().int().positive(),
  start: z.string().max(64).optional(),
  name: z.string().max(256).optional(),
  claudeCode: z.boolean(),
  agent: z.enum(AGENTS).optional(),
  invocation: z.enum(INVOCATIONS).optional(),
  helperTtlMs: z.number().int().min(0).max(MAX_HELPER_TTL_MS).optional(),
  settingsMtimeMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});

// Absolute and bounded: it is matched against the directories: map and written to the audit trail.
const cwd = z
  .string()
  .max(MAX_CWD_BYTES)
  .refine((p) => p.startsWith('/') && !p.includes('\0'), 'must be an absolute path');

const requestSchema = z.discriminatedUnion('op', [
  z.strictObject({
    v: z.literal(1),
    op: z.literal('get'),
    profile: profileName.optional(),
    cwd: cwd.optional(),
    refresh: z.boolean().optional(),
    consumer: consumer.optional(),
    [FRAMED_FLAG]: z.boolean().optional(),
  }),
  z.strictObject({
    v: z.literal(1),
    op: z.literal('refresh'),
    profile: profileName.optional(),
    all: z.boolean().optional(),
  }),
  z.strictObject({
    v: z.literal(1),
    op: z.literal('forget'),
    profile: profileName.optional(),
    all: z.boolean().optional(),
  }),
  z.strictObject({
    v: z.literal(1),
    op: z.literal('set'),
    profile: profileName,
    source: z.string().min(1).max(4096),
    // A key, as text; the daemon checks it as it checks a fetched one (not empty, one line).
    value: z.string().min(1).max(MAX_SET_VALUE_CHARS),
  }),
  z.strictObject({ v: z.literal(1), op: z.literal('status') }),
  z.strictObject({ v: z.literal(1), op: z.literal('ping') }),
]);

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Decode a request line (without its newline). Throws BrokerError('BAD_REQUEST'). */
export function decodeRequest(line: Uint8Array): Request {
  let text: string;
  try {
    text = decoder.decode(line);
  } catch {
    throw new BrokerError('BAD_REQUEST', 'request is not valid UTF-8');
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new BrokerError('BAD_REQUEST', 'request is not valid JSON (send one JSON object per line)');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new BrokerError('BAD_REQUEST', 'request must be a JSON object');
  }
  const obj = data as Record<string, unknown>;
  if (obj.v !== PROTOCOL_VERSION) {
    throw new BrokerError(
      'BAD_REQUEST',
      `unsupported protocol version ${JSON.stringify(obj.v ?? null)}: this daemon speaks v${PROTOCOL_VERSION} (restart it after upgrading keybroker)`,
    );
  }
  if (typeof obj.op !== 'string' || !(OPS as readonly string[]).includes(obj.op)) {
    throw new BrokerError(
      'BAD_REQUEST',
      `unknown op ${JSON.stringify(typeof obj.op === 'string' ? obj.op.slice(0, 32) : (obj.op ?? null))}: use one of ${OPS.join(', ')}`,
    );
  }
  const result = requestSchema.safeParse(obj);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
    const what =
      issue.code === 'unrecognized_keys'
        ? `unknown field ${issue.keys.map((k) => JSON.stringify(k.slice(0, 32))).join(', ')}`
        : issue.message;
    throw new BrokerError('BAD_REQUEST', `bad ${obj.op} request: ${where}${what}`);
  }
  return result.data as Request;
}

/**
 * Whether a request line asks for a framed reply. Read from the line itself, so that a request
 * refused as bad (an unknown field from a newer client) gets its refusal framed too; a line that
 * is not a JSON object gets a JSON reply.
 */
export function asksForFrame(line: Uint8Array): boolean {
  try {
    const data: unknown = JSON.parse(decoder.decode(line));
    return typeof data === 'object' && data !== null && (data as Record<string, unknown>)[FRAMED_FLAG] === true;
  } catch {
    return false;
  }
}
