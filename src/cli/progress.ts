// The progress line for anything slow, on stderr: stdout carries results, for a log or a script.
// Its own module, without readline, so commands that only show progress (doctor) load little.

export interface ProgressOptions {
  /** Say nothing until the wait has lasted this long (a fast wait shows nothing). */
  afterMs?: number;
  /** Off a terminal, say nothing at all (instead of the line once). */
  terminalOnly?: boolean;
}

/**
 * Say what is about to take time, and for how long it has been waiting: on a terminal one line
 * that counts seconds and is cleared when done; elsewhere the line once. Returns done().
 */
export function startProgress(
  what: string,
  output: NodeJS.WriteStream = process.stderr,
  options: ProgressOptions = {},
): () => void {
  // "reading exec:op …" already ends in an ellipsis: one is enough.
  const line = what.endsWith('…') ? what : `${what} …`;
  if (!output.isTTY) {
    if (!options.terminalOnly) output.write(`${line}\n`);
    return () => {};
  }
  const started = Date.now();
  let shown = false;
  const show = (): void => {
    const seconds = Math.round((Date.now() - started) / 1000);
    output.write(`\r${line}${seconds > 0 ? ` ${seconds} s` : ''}`);
    shown = true;
  };
  if (!options.afterMs) show();
  const timer = setInterval(show, options.afterMs ?? 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
    if (shown) output.write('\r\x1b[K');
  };
}
