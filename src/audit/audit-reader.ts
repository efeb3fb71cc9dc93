// Reading the audit trail back for `keybroker audit`: the previous file, then the current one
// (oldest first, newest last), filtered by time and profile. The file is trusted only when it is a
// regular file of ours that nobody else can read or write — a forged trail would answer "who got
// the leaked key?" wrongly.
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { formatDuration } from '../duration.js';
import { collapseHome } from '../client/socket-path.js';
import { AGENT_LABELS, agentOf } from '../protocol/messages.js';
import { checkPrivate } from './audit-log.js';
import { AUDIT_FILE, AUDIT_PREVIOUS_FILE, type AuditRecord } from './audit-record.js';

/** Larger than rotation ever leaves a file: anything bigger is not ours to parse. */
const MAX_READ_BYTES = 64 * 1024 * 1024;

export interface AuditQuery {
  /** Only records at or after this time (ms since the epoch). */
  sinceMs?: number | undefined;
  profile?: string | undefined;
}

export interface AuditReadResult {
  records: AuditRecord[];
  /** Lines that are not records (a torn last line after a crash, a hand edit). */
  skipped: number;
  /** The files that existed and were read. */
  files: string[];
}

export async function readAudit(dir: string, query: AuditQuery = {}): Promise<AuditReadResult> {
  const result: AuditReadResult = { records: [], skipped: 0, files: [] };
  for (const name of [AUDIT_PREVIOUS_FILE, AUDIT_FILE]) {
    const file = path.join(dir, name);
    const text = await readTrusted(file);
    if (text === undefined) continue;
    result.files.push(file);
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      const record = parseRecord(line);
      if (!record) {
        result.skipped++;
        continue;
      }
      if (query.sinceMs !== undefined && Date.parse(record.time) < query.sinceMs) continue;
      if (query.profile !== undefined && record.profile !== query.profile) continue;
      result.records.push(record);
    }
  }
  return result;
}

async function readTrusted(file: string): Promise<string | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await handle.stat();
    checkPrivate(st, file);
    if (st.size > MAX_READ_BYTES) return undefined;
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

function parseRecord(line: string): AuditRecord | undefined {
  try {
    const r = JSON.parse(line) as Partial<AuditRecord>;
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.time !== 'string' ||
      typeof r.op !== 'string' ||
      typeof r.profile !== 'string' ||
      typeof r.outcome !== 'string'
    )
      return undefined;
    return r as AuditRecord;
  } catch {
    return undefined;
  }
}

/**
 * A field as it may be shown on a terminal. A cwd or a process name comes from whatever process
 * asked, and could carry escape sequences or newlines that rewrite the table on screen.
 */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** The human table: one row per record, newest last. */
export function renderAudit(
  records: readonly AuditRecord[],
  home: string,
  table: (header: string[], rows: string[][]) => string,
): string {
  const rows = records.map((r) =>
    [
      r.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
      r.op,
      r.profile,
      r.chosenBy === 'directory' ? `dir ${r.directory ?? '?'}` : r.chosenBy,
      consumerLabel(r),
      peerLabel(r),
      r.cwd ? collapseHome(r.cwd, home) : '-',
      r.outcome === 'error' ? `error ${r.error ?? ''}`.trim() : r.outcome,
      versionLabel(r) + (r.rejected ? ` (rejected: ${versionLabel(r.rejected)})` : ''),
    ].map((cell) => printable(String(cell))),
  );
  return `${table(['TIME (UTC)', 'OP', 'PROFILE', 'CHOSEN BY', 'CONSUMER', 'PEER', 'CWD', 'OUTCOME', 'VERSION'], rows)}\n`;
}

/** Who the client says it asks for; a claim the kernel refuted or could not check says so. */
function consumerLabel(r: AuditRecord): string {
  const c = r.consumer;
  if (!c) return '-';
  const agent = agentOf(c);
  const who = `${c.name ?? '?'}[${c.pid}]${agent ? ` ${AGENT_LABELS[agent]}${c.invocation ? ` ${c.invocation}` : ''}` : ''}`;
  if (r.consumerIs === 'unrelated') return `${who} (FALSE CLAIM: not the peer or its ancestor)`;
  if (r.consumerIs === 'unknown') return `${who} (unchecked: the kernel could not say who asked)`;
  return who;
}

/** Who asked, as the kernel says: the peer's executable and pid (and uid when it is not ours). */
function peerLabel(r: AuditRecord): string {
  const p = r.peer;
  if (!p) return '-';
  const uid = process.getuid?.();
  return `${p.exe ? path.basename(p.exe) : '?'}[${p.pid}]${uid !== undefined && p.uid !== uid ? ` uid ${p.uid}` : ''}`;
}

function versionLabel(v: { version?: string; fingerprint?: string }): string {
  if (v.version !== undefined) return `v ${v.version}`;
  if (v.fingerprint !== undefined) return `fp ${v.fingerprint}`;
  return '-';
}

/** "3 records in the last 1h" — the footer, so an empty table is not mistaken for a broken trail. */
export function summaryLine(count: number, sinceMs: number | undefined, now: number): string {
  const window = sinceMs === undefined ? '' : ` in the last ${formatDuration(now - sinceMs)}`;
  return `${count} record${count === 1 ? '' : 's'}${window}`;
}
