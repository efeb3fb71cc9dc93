import os from 'node:os';
import type { Command } from 'commander';
import { chooseProfile, describeChoice, realDirectory } from '../config/directories.js';
import { formatDuration } from '../duration.js';
import { renderError, type ProfileStatus, type StatusReply } from '../protocol/messages.js';
import { collapseHome } from '../client/socket-path.js';
import { callDaemon } from './client.js';
import { coloursFor, type Colours } from './colour.js';
import { table } from './output.js';
import { unmarkedNote } from '../integration/unmarked-consumers.js';
import { rejectionNote } from '../integration/rejected-key.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show the daemon and every profile: state, age, expiry, hits, consumers, last error (never a value)')
    .option('--json', 'print the status reply as JSON')
    .addHelpText(
      'after',
      `
A profile marked (managed) comes from the organisation's managed config
(/etc/keybroker/managed.yaml); a profile of that name in your config is ignored.
States: cold (not fetched yet), fresh, stale (past its TTL, served because the source is
failing), expired (past its TTL, fetched again on the next read), error (no value to serve),
needs sign-in (the source wants you to authenticate), rejected (a consumer got a 401 for the
key twice and the source still returns it: since when and for whom is on the line under the
table; it clears once a refresh brings a different value).

"here" names the profile a helper without a profile argument gets in this directory, and why;
"hardened" what the daemon's hardening addon gave it (--json: daemon.hardening; see docs/security.md);
"audit" shows the audit trail's file, records written and dropped (see: keybroker audit --help);
"telemetry" where the OpenTelemetry export sends and what it sent and dropped (docs/telemetry.md).

FRESH FOR is the time left before the cached value is refetched; EXPIRES IN is the time left
before the value itself stops working, for values that say (a JWT's exp, an exec source's
expiresAt with output: json, AWS credentials' Expiration): it is never served past that.
"rate limited, retry in …" means the backend asked (HTTP 429 Retry-After) to be left alone
that long. Examples:
  keybroker status
  keybroker status --json | jq '.profiles[] | {name, valueExpiresInMs, rateLimitedForMs}'`,
    )
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const reply = await callDaemon<StatusReply>(cmd.optsWithGlobals(), { v: 1, op: 'status' }, 5_000);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(reply, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        renderStatus(reply, await directoryLine(reply, process.cwd(), os.homedir()), coloursFor(process.stdout)),
      );
    });
}

/**
 * Which profile a helper without a profile argument gets here, and why — the daemon's own rule
 * over its own directories: list, with this directory resolved the way the daemon resolves the
 * shim's.
 */
export async function directoryLine(reply: StatusReply, cwd: string, home: string): Promise<string> {
  const choice = chooseProfile(reply.directories ?? [], undefined, await realDirectory(cwd));
  return `${collapseHome(cwd, home)} → ${describeChoice(choice)}`;
}

export function stateLabel(p: ProfileStatus): string {
  if (p.rejected) return 'rejected';
  if (p.lastError?.code === 'AUTH_REQUIRED' && (p.state === 'error' || p.state === 'stale')) return 'needs sign-in';
  return p.state;
}

/** "expires in": the value's own expiry (a JWT's exp, a credential's Expiration), when it has one. */
function valueExpiryLabel(p: ProfileStatus): string {
  const ms = p.valueExpiresInMs ?? null;
  if (ms === null) return '-';
  return ms <= 0 ? `expired ${formatDuration(-ms)} ago` : formatDuration(ms);
}

function lastErrorLabel(p: ProfileStatus): string {
  const limited = p.rateLimitedForMs ? `rate limited, retry in ${formatDuration(p.rateLimitedForMs)}` : '';
  if (!p.lastError) return limited || '-';
  const error = `${p.lastError.code}: ${renderError(p.lastError)}`;
  return limited ? `${limited} — ${error}` : error;
}

/**
 * A profile's state as a verdict: fresh is well, stale and expired are worth a look, error and a
 * key refused as rejected are not.
 */
function stateVerdict(p: ProfileStatus): 'ok' | 'warn' | 'fail' | undefined {
  if (p.rejected) return 'fail';
  if (p.state === 'fresh') return p.lastError ? 'warn' : 'ok';
  if (p.state === 'stale' || p.state === 'expired') return 'warn';
  if (p.state === 'error') return 'fail';
  return undefined;
}

/** The lines under the table about one profile: a key refused as rejected, unmarked consumers. */
function profileNotes(p: ProfileStatus, now: number): string[] {
  const lines: string[] = [];
  const rejected = rejectionNote(p, now);
  if (rejected) lines.push(`rejected profile "${p.name}": ${rejected.message} — ${rejected.fix}`);
  const note = unmarkedNote(p);
  if (note) lines.push(`note     profile "${p.name}": ${note}`);
  return lines;
}

export function renderStatus(reply: StatusReply, here?: string, colours?: Colours, now = Date.now()): string {
  const d = reply.daemon;
  // "warning  …" and "error    …" lines: the label in its verdict's colour.
  const label = (text: string): string => {
    if (!colours) return text;
    const [word, rest] = [text.slice(0, 9), text.slice(9)];
    if (word.startsWith('warning')) return colours.warn(word.trimEnd()) + ' '.repeat(9 - word.trimEnd().length) + rest;
    if (word.startsWith('error')) return colours.fail(word.trimEnd()) + ' '.repeat(9 - word.trimEnd().length) + rest;
    return text;
  };
  const lines = [
    `daemon   pid ${d.pid}, keybroker ${d.version}, up ${formatDuration(d.uptimeMs)}`,
    `socket   ${d.socket}`,
    `config   ${d.config}`,
  ];
  if (d.managedConfig) lines.push(`managed  ${d.managedConfig}${d.managedConfigError ? ' (ignored)' : ''}`);
  if (d.managedConfigError) lines.push(`error    ${d.managedConfigError}`);
  if (d.lastReloadError) {
    // One problem per line, under the warning.
    const [first, ...more] = d.lastReloadError.split('\n');
    lines.push(`warning  config not loaded: ${first}`, ...more.map((l) => `         ${l}`));
  }
  if (here !== undefined) lines.push(`here     ${here} (for a helper without a profile argument)`);
  const h = d.hardening;
  if (h) {
    const done = [
      h.nonDumpable && 'not dumpable',
      h.coreLimitZero && 'core limit 0',
      h.peerCredentials && 'kernel peer identity',
    ].filter(Boolean);
    const full = h.addon && h.nonDumpable && h.peerCredentials;
    lines.push(
      `hardened ${full ? `yes (${done.join(', ')})` : `no${done.length > 0 ? ` (only ${done.join(', ')})` : ''}`}`,
    );
    for (const problem of h.problems) lines.push(`warning  ${problem}`);
  }
  const a = reply.audit;
  if (a) {
    lines.push(
      a.enabled
        ? `audit    ${a.file}: ${a.written} written, ${a.dropped} dropped`
        : 'audit    off (audit: false in the config)',
    );
    if (a.lastError) lines.push(`warning  audit trail: ${renderError(a.lastError)} (records are being dropped)`);
    else if (a.enabled && a.dropped > 0)
      lines.push(
        `warning  audit trail: ${a.dropped} record${a.dropped === 1 ? '' : 's'} dropped (buffer full or a write failed)`,
      );
  }
  const t = reply.telemetry;
  if (t) {
    const where = t.metrics ?? (t.fromEnvironment ? 'OTEL_EXPORTER_OTLP_* (the service environment)' : 'nowhere');
    lines.push(
      `telemetry ${where}: ${t.logRecords.exported} records sent, ${t.logRecords.dropped} dropped${t.orgSalt ? ", organisation's salt" : ''}`,
    );
    if (t.lastError) lines.push(`warning  telemetry: ${t.lastError.message}`);
  }
  lines.push('');
  const tableStart = lines.length;
  if (reply.profiles.length === 0) {
    lines.push('no profiles');
  } else {
    lines.push(
      table(
        ['PROFILE', 'SOURCE', 'STATE', 'AGE', 'FRESH FOR', 'EXPIRES IN', 'HITS/MISSES', 'CONSUMERS', 'LAST ERROR'],
        reply.profiles.map((p) => [
          p.managed ? `${p.name} (managed)` : p.name,
          p.source,
          stateLabel(p),
          p.ageMs === null ? '-' : formatDuration(p.ageMs),
          p.expiresInMs === null
            ? '-'
            : p.expiresInMs < 0
              ? `TTL ended ${formatDuration(-p.expiresInMs)} ago`
              : formatDuration(p.expiresInMs),
          valueExpiryLabel(p),
          `${p.hits}/${p.misses}`,
          String(p.consumers),
          lastErrorLabel(p),
        ]),
        (text, column, row) => {
          const p = reply.profiles[row]!;
          if (!colours) return text;
          if (column === 2) {
            const verdict = stateVerdict(p);
            return verdict ? colours.verdict(verdict, text) : text;
          }
          if (column === 8 && p.lastError) return colours.fail(text);
          return text;
        },
      ),
    );
  }
  for (const p of reply.profiles) lines.push(...profileNotes(p, now));
  for (const s of reply.sources) for (const note of s.notes) lines.push(`${s.kind}: ${note}`);
  return `${lines.map((l, i) => (i < tableStart ? label(l) : l)).join('\n')}\n`;
}
