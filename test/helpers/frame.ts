// Reading a framed reply (src/protocol/framed-reply.ts) in tests, strictly: the header's length
// matches the fields exactly, each field is NAME LENGTH\nBYTES\n, no name twice.
import { FRAME_MAGIC } from '../../src/protocol/framed-reply.js';

export function decodeFrame(frame: Buffer): Record<string, string> {
  const header = new RegExp(`^${FRAME_MAGIC} (0|[1-9][0-9]*)\\n`).exec(frame.toString('latin1'));
  if (!header) throw new Error('no frame header');
  const body = frame.subarray(header[0].length);
  if (body.length !== Number(header[1])) throw new Error(`frame length ${header[1]}, got ${body.length} bytes`);
  const fields: Record<string, string> = {};
  for (let at = 0; at < body.length;) {
    const line = /^([a-zA-Z.]{1,32}) (0|[1-9][0-9]*)\n/.exec(body.subarray(at, at + 64).toString('latin1'));
    if (!line) throw new Error(`bad field at ${at}`);
    const start = at + line[0].length;
    const end = start + Number(line[2]);
    if (end + 1 > body.length || body[end] !== 0x0a) throw new Error(`field ${line[1]} overruns the frame`);
    if (line[1]! in fields) throw new Error(`field ${line[1]} twice`);
    fields[line[1]!] = body.subarray(start, end).toString('utf8');
    at = end + 1;
  }
  return fields;
}
