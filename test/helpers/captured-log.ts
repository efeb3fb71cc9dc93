// A logger whose lines a test reads back: for what a component logs, and for the checks that no
// token, key or secret ever reaches a log line.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

export interface CapturedLog {
  log: Logger;
  /** Every line written so far. */
  text(): string;
}

export function capturedLog(level = 'debug'): CapturedLog {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { log: createLogger({ level, destination: sink }), text: () => text };
}
