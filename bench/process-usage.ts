// What another process uses. Memory: /proc/<pid>/status on Linux (VmRSS now, VmHWM the peak),
// `ps -o rss=` elsewhere (no peak there, so the bench samples while it loads the server).
// CPU time: /proc/<pid>/stat on Linux only; it tells the servers' own cost per request apart
// from the load generator's, which shares the machine with them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

export interface Memory {
  rssKiB: number;
  /** Peak RSS since start or since the last resetPeak; Linux only. */
  hwmKiB?: number;
  /**
   * The private part of RSS (heap, stacks), Linux only. The rest is mostly the node binary's
   * file pages, shared with every other node process, so this is what the daemon itself costs.
   */
  anonKiB?: number;
}

export const hasProcStatus = process.platform === 'linux';

export function readMemory(pid: number): Memory | undefined {
  if (hasProcStatus) {
    let status: string;
    try {
      status = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
    } catch {
      return undefined;
    }
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    const anon = /^RssAnon:\s+(\d+) kB/m.exec(status);
    if (!rss) return undefined;
    const memory: Memory = { rssKiB: Number(rss[1]) };
    if (hwm) memory.hwmKiB = Number(hwm[1]);
    if (anon) memory.anonKiB = Number(anon[1]);
    return memory;
  }
  const out = spawnSync('ps', ['-o', 'rss=', '-p', String(pid)], { encoding: 'utf8', timeout: 2000 });
  const kib = Number.parseInt((out.stdout ?? '').trim(), 10);
  return Number.isFinite(kib) ? { rssKiB: kib } : undefined;
}

/**
 * Reset VmHWM to the current RSS (Linux >= 4.0, own processes only), so the peak read after the
 * load is the load's peak and not start-up's. False when the kernel refuses: the peak read later
 * then also covers start-up, which still bounds the load's peak from above.
 */
export function resetPeak(pid: number): boolean {
  if (!hasProcStatus) return false;
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export interface PeakSampler {
  /** Stop sampling; the highest RSS seen per pid, in KiB. */
  stop(): Map<number, number>;
}

/**
 * Sample RSS while a load runs. On Linux VmHWM is the real peak and this is only a cross-check;
 * elsewhere it is the only peak there is, so it samples less often (each `ps` is a process).
 */
export function samplePeaks(pids: readonly number[]): PeakSampler {
  const peaks = new Map<number, number>(pids.map((pid) => [pid, 0]));
  const sample = (): void => {
    for (const pid of pids) {
      const m = readMemory(pid);
      if (m && m.rssKiB > (peaks.get(pid) ?? 0)) peaks.set(pid, m.rssKiB);
    }
  };
  sample();
  const timer = setInterval(sample, hasProcStatus ? 50 : 250);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peaks;
    },
  };
}

let clockTicks: number | undefined;

/** User plus system CPU time the process has used, in ms; undefined where /proc is missing. */
export function readCpuMs(pid: number): number | undefined {
  if (!hasProcStatus) return undefined;
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // Fields after "(comm)", which may itself hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (clockTicks === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000 });
    const hz = Number.parseInt((out.stdout ?? '').trim(), 10);
    clockTicks = Number.isFinite(hz) && hz > 0 ? hz : 100;
  }
  return Number.isFinite(ticks) ? (ticks * 1000) / clockTicks : undefined;
}
