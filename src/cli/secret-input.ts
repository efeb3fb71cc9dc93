// Reading a key from a person or a pipe, never from argv (which `ps` shows and shells keep):
// on a terminal a prompt that does not echo what is typed or pasted; otherwise all of stdin, with
// the one trailing newline `echo KEY |` adds stripped. Written by hand rather than with a prompt
// library: it must refuse a paste that holds a line break instead of taking its first line, and the
// libraries that hide input need a newer Node 20 than keybroker supports.
import { isUtf8 } from 'node:buffer';
import { BrokerError } from '../errors.js';
import { SecretValue, withoutTrailingNewline } from '../secret.js';

/**
 * ^C at the prompt. The caller turns it into exit 130, as a shell would; this module stays free of
 * the CLI's output helpers, so that loading it on demand adds no chunk to every command's start.
 */
export class KeyInputCancelled extends Error {
  constructor() {
    super('cancelled');
    this.name = 'KeyInputCancelled';
  }
}

/** Longer than any API key; the bound keeps a mistaken `< big-file` from being read whole. */
export const MAX_KEY_BYTES = 16 * 1024;

export interface KeyInput {
  stdin: NodeJS.ReadStream;
  /** Where the prompt goes (stderr: stdout may be a pipe someone reads). */
  prompt: NodeJS.WriteStream;
}

/** Read one key: a hidden prompt on a terminal, else stdin. Throws INVALID_VALUE for a bad one. */
export async function readKey(
  promptText: string,
  io: KeyInput = { stdin: process.stdin, prompt: process.stderr },
): Promise<SecretValue> {
  const bytes = io.stdin.isTTY ? await readHidden(promptText, io) : await readPiped(io.stdin);
  try {
    return checkKey(bytes);
  } finally {
    bytes.fill(0);
  }
}

/** A key as `key set` accepts it: not empty, UTF-8, one line, no control characters. */
export function checkKey(bytes: Buffer): SecretValue {
  if (bytes.length === 0)
    throw new BrokerError(
      'INVALID_VALUE',
      'no key given: paste it at the prompt, or pipe it in (printf %s "$KEY" | keybroker key set PROFILE)',
    );
  if (!isUtf8(bytes)) throw new BrokerError('INVALID_VALUE', 'the key is not UTF-8 text');
  if (bytes.includes(0x0a) || bytes.includes(0x0d))
    throw new BrokerError('INVALID_VALUE', 'the key has a line break inside: a key is one line — give only the key');
  for (const b of bytes) {
    if (b < 0x20 || b === 0x7f)
      throw new BrokerError(
        'INVALID_VALUE',
        'the key has a control character in it (a stray arrow or escape key?): give only the key',
      );
  }
  return SecretValue.fromBytes(bytes);
}

async function readPiped(stdin: NodeJS.ReadStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stdin as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_KEY_BYTES + 2)
        throw new BrokerError('INVALID_VALUE', `the input is longer than ${MAX_KEY_BYTES} bytes: that is not a key`);
    }
    const all = Buffer.concat(chunks);
    const key = Buffer.from(withoutTrailingNewline(all));
    all.fill(0);
    return key;
  } finally {
    for (const c of chunks) c.fill(0);
  }
}

/**
 * A prompt that echoes nothing: the terminal in raw mode, bytes gathered until Enter. Backspace
 * and ^U edit, ^C gives up (KeyInputCancelled), ^D ends. A paste with more after its first
 * line break is kept whole, so checkKey refuses it rather than keeping a part.
 */
function readHidden(promptText: string, io: KeyInput): Promise<Buffer> {
  const { stdin, prompt } = io;
  prompt.write(promptText);
  let buf = Buffer.alloc(0);
  const grow = (more: Buffer): void => {
    const next = Buffer.concat([buf, more]);
    buf.fill(0);
    buf = next;
  };
  return new Promise<Buffer>((resolve, reject) => {
    const finish = (outcome: Buffer | Error): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      prompt.write('\n');
      if (outcome instanceof Error) {
        buf.fill(0);
        reject(outcome);
      } else resolve(outcome);
    };
    const onData = (chunk: Buffer): void => {
      try {
        take(chunk);
      } finally {
        chunk.fill(0);
      }
    };
    const take = (chunk: Buffer): void => {
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i]!;
        if (b === 0x03) return finish(new KeyInputCancelled());
        if (b === 0x04) return finish(buf);
        if (b === 0x0d || b === 0x0a) {
          const rest = chunk.subarray(i + 1);
          // A pasted "KEY\r\n" or "KEY\n": done. Anything after the line break: keep it, refuse it.
          if (rest.length === 0 || (b === 0x0d && rest.length === 1 && rest[0] === 0x0a)) return finish(buf);
          grow(chunk.subarray(i));
          return finish(buf);
        }
        if (b === 0x7f || b === 0x08) {
          // Back over one UTF-8 character: its continuation bytes, then its first byte.
          let end = buf.length;
          while (end > 0 && (buf[end - 1]! & 0xc0) === 0x80) end--;
          if (end > 0) end--;
          buf.fill(0, end);
          buf = buf.subarray(0, end);
          continue;
        }
        if (b === 0x15) {
          buf.fill(0);
          buf = Buffer.alloc(0);
          continue;
        }
        grow(chunk.subarray(i, i + 1));
        if (buf.length > MAX_KEY_BYTES)
          return finish(
            new BrokerError('INVALID_VALUE', `the input is longer than ${MAX_KEY_BYTES} bytes: that is not a key`),
          );
      }
    };
    stdin.setRawMode(true);
    stdin.on('data', onData);
    stdin.resume();
  });
}
