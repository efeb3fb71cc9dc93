// How the CLI speaks: results on stdout, one-line errors on stderr, an exit status per error code.
import { exitCodeFor } from '../protocol/messages.js';

export class CliExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

/** Print an error line and exit with the status for its code. */
export function die(code: string, message: string): never {
  process.stderr.write(`keybroker: ${message}\n`);
  throw new CliExit(exitCodeFor(code));
}

/** Render rows as an aligned text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
