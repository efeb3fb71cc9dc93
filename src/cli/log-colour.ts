// Colour for `keybroker logs` on a terminal. The decision is ours, not picocolors' own guess
// (which takes FORCE_COLOR=0 and CI=1 as "colour on"): --no-color, then FORCE_COLOR (as Node's
// own tty colour check orders them), then NO_COLOR (no-color.org: set and not empty), then
// whether the stream is a terminal other than TERM=dumb. picocolors only paints.
import pc from 'picocolors';
import type { LogLineOptions } from '../log.js';

export function wantsColour(
  flag: boolean | undefined,
  env: NodeJS.ProcessEnv,
  isTty: boolean = process.stdout.isTTY === true,
): boolean {
  if (flag === false) return false;
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force !== 'false';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return isTty && env.TERM !== 'dumb';
}

/** The level word in its colour, the fields dimmed: what formatLogLine takes. */
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
