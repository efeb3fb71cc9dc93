// The framed reply (docs/protocol.md, "Framed replies"): what a get with "framed": true gets
// instead of a JSON line — named, length-prefixed fields that a client reads without a JSON
// parser. The native shim asks for it; scripts/build-native.mjs generates its copy of the names
// below, and src/shim/native/framed-reply.c reads it.

/** The request field that asks for a framed reply. */
export const FRAMED_FLAG = 'framed';
/** A frame starts with this word, a space, the byte length of its fields in decimal, a newline. */
export const FRAME_MAGIC = 'KB1';
/** Field names are at most this long, of [a-zA-Z.]. */
export const MAX_FRAME_NAME_BYTES = 32;

/**
 * The fields, each at most once. A value frame has `value`; an error frame has `error.code`,
 * `error.status` (its exit status, decimal) and `error.message`. A reader skips names it does not
 * know, so later versions can add fields.
 */
export const FRAME_FIELDS = [
  'value',
  'warning.message',
  'warning.profile',
  'warning.fix',
  'daemon.pid',
  'daemon.version',
  'daemon.build',
  'daemon.startedBy',
  'error.code',
  'error.status',
  'error.message',
  'error.profile',
  'error.fix',
] as const;
export type FrameField = (typeof FRAME_FIELDS)[number];

/** `FRAME_MAGIC LENGTH\n`, then `NAME LENGTH\nBYTES\n` per field, lengths in bytes (UTF-8). */
export function encodeFrame(fields: ReadonlyArray<readonly [FrameField, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, text] of fields) {
    const bytes = Buffer.from(text, 'utf8');
    parts.push(Buffer.from(`${name} ${bytes.length}\n`), bytes, Buffer.from('\n'));
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from(`${FRAME_MAGIC} ${body.length}\n`), body]);
}
