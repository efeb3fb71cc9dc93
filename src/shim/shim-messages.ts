// What the shim prints around a message, as data: the native shim's copies are generated from
// these by scripts/build-native.mjs, so both shims print the same lines.

export const SHIM_TEXT = {
  /** Every line on stderr starts with this. */
  prefix: 'keybroker: ',
  warning: 'warning: ',
  staleWarning: 'warning: serving a cached value past its TTL: ',
  /** The last resort: nothing here should throw, and an error's own text may hold a value. */
  internalError: 'internal error in keybroker-shim',
  noValue: 'the daemon answered without a value',
  /** What a run of whitespace holding a newline becomes (see oneLine). */
  lineBreak: '; ',
} as const;

/** One line: Claude Code shows stderr as "apiKeyHelper failed: exited N: <stderr>". */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, SHIM_TEXT.lineBreak);
}
