// Colour for people at a terminal, and only there. One decision for the whole CLI:
// --no-color, then NO_COLOR (https://no-color.org), then FORCE_COLOR, then whether the stream is a
// terminal (TERM=dumb is not one that shows colour). picocolors does the escapes; util.styleText
// would do, but exists only from Node 20.12 and we support every Node 20.
import pc from 'picocolors';
import type { LogLineOptions } from '../log.js';

export type Verdict = 'ok' | 'warn' | 'fail';

/** What the CLI colours: verdicts, and text that matters less (times, fixes) or more (headers). */
export interface Colours {
  readonly enabled: boolean;
  ok(text: string): string;
  warn(text: string): string;
  fail(text: string): string;
  dim(text: string): string;
  bold(text: string): string;
  /** The colour of a verdict: ok green, warn yellow, fail red. */
  verdict(status: Verdict, text: string): string;
}

let noColorFlag = false;

/** The global --no-color was given (main.ts's preAction hook). */
export function disableColour(): void {
  noColorFlag = true;
}

/** Whether output to `stream` gets colour. */
export function wantsColour(
  stream: { isTTY?: boolean | undefined },
  env: NodeJS.ProcessEnv = process.env,
  flagOff: boolean = noColorFlag,
): boolean {
  if (flagOff) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force.toLowerCase() !== 'false';
  return stream.isTTY === true && env.TERM !== 'dumb';
}

/** The colours for one output stream (stdout for results, stderr for errors and progress). */
export function coloursFor(
  stream: { isTTY?: boolean | undefined } = process.stdout,
  env: NodeJS.ProcessEnv = process.env,
): Colours {
  const enabled = wantsColour(stream, env);
  const c = pc.createColors(enabled);
  const byVerdict: Record<Verdict, (text: string) => string> = { ok: c.green, warn: c.yellow, fail: c.red };
  return {
    enabled,
    ok: c.green,
    warn: c.yellow,
    fail: c.red,
    dim: c.dim,
    bold: c.bold,
    verdict: (status, text) => byVerdict[status](text),
  };
}

/** For `keybroker logs`: the level word in its colour and the fields dimmed (formatLogLine's options). */
export function logLineColours(enabled: boolean): Pick<LogLineOptions, 'styleLevel' | 'dim'> {
  if (!enabled) return {};
  const c = pc.createColors(true);
  const byLevel: Readonly<Record<string, (s: string) => string>> = {
    FATAL: (s) => c.bold(c.red(s)),
    ERROR: c.red,
    WARN: c.yellow,
    INFO: c.green,
    DEBUG: c.blue,
    TRACE: c.gray,
  };
  return { styleLevel: (level, padded) => (byLevel[level] ?? ((s: string) => s))(padded), dim: c.dim };
}
