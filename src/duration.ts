// Durations in config: a number of seconds, or a number with one unit: 500ms, 30s, 5m, 1h, 1d.
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;

/** setTimeout cannot wait longer than this; longer durations would fire at once. */
export const MAX_DURATION_MS = 2_147_483_647;

/** Parse a duration to milliseconds, or return an explanation of what is wrong. */
export function parseDuration(input: unknown): { ok: true; ms: number } | { ok: false; reason: string } {
  let ms: number;
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0)
      return { ok: false, reason: `${input} is not a duration: use a number of seconds ≥ 0, or 30s, 5m, 1h, 1d` };
    ms = input * 1000;
  } else if (typeof input === 'string') {
    const m = DURATION.exec(input.trim());
    if (!m) return { ok: false, reason: `"${input}" is not a duration: use a number of seconds, or 30s, 5m, 1h, 1d` };
    ms = Number(m[1]) * (UNIT_MS[m[2] ?? 's'] ?? 1000);
  } else {
    return { ok: false, reason: `expected a duration such as 30s, 5m, 1h or 1d` };
  }
  ms = Math.round(ms);
  if (ms > MAX_DURATION_MS) return { ok: false, reason: `${String(input)} is too long: at most 24d` };
  return { ok: true, ms };
}

export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(Math.round(ms));
  if (rest < 1000) return `${sign}${rest}ms`;
  rest = Math.round(rest / 1000);
  if (rest < 60) return `${sign}${rest}s`;
  if (rest < 3600) return `${sign}${Math.floor(rest / 60)}m${pad(rest % 60, 's')}`;
  if (rest < 86_400) return `${sign}${Math.floor(rest / 3600)}h${pad(Math.floor((rest % 3600) / 60), 'm')}`;
  return `${sign}${Math.floor(rest / 86_400)}d${pad(Math.floor((rest % 86_400) / 3600), 'h')}`;
}

function pad(n: number, unit: string): string {
  return n === 0 ? '' : `${n}${unit}`;
}
