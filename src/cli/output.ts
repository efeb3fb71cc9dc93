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

/**
 * Render rows as an aligned text table. `paint` colours a body cell's text; the padding stays
 * outside the colour, so columns line up on a terminal as they do in a file.
 */
export function table(
  header: string[],
  rows: string[][],
  paint: (text: string, column: number, row: number) => string = (text) => text,
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[], row: number): string =>
    cells
      .map((c, i) => {
        const text = row < 0 || c === '' ? c : paint(c, i, row);
        return i === cells.length - 1 ? text : text + ' '.repeat(widths[i]! - c.length);
      })
      .join('  ')
      .trimEnd();
  return [line(header, -1), ...rows.map(line)].join('\n');
}
