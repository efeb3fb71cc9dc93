import type { Command } from 'commander';
import { formatDuration } from '../config/duration.js';
import type { ProfileStatus, StatusReply } from '../protocol/messages.js';
import { callDaemon } from './client.js';
import { table } from './output.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show the daemon and every profile: state, age, expiry, hits, consumers, last error (never a value)')
    .option('--json', 'print the status reply as JSON')
    .addHelpText(
      'after',
      `
States: cold (not fetched yet), fresh, stale (past its TTL, served because the source is
failing), expired (past its TTL, fetched again on the next read), error (no value to serve),
needs sign-in (the source wants you to authenticate).`,
    )
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const reply = await callDaemon<StatusReply>(cmd.optsWithGlobals(), { v: 1, op: 'status' }, 5_000);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(reply, null, 2)}\n`);
        return;
      }
      process.stdout.write(renderStatus(reply));
    });
}

export function stateLabel(p: ProfileStatus): string {
  if (p.lastError?.code === 'AUTH_REQUIRED' && (p.state === 'error' || p.state === 'stale')) return 'needs sign-in';
  return p.state;
}

export function renderStatus(reply: StatusReply): string {
  const d = reply.daemon;
  const lines = [
    `daemon   pid ${d.pid}, keybroker ${d.version}, up ${formatDuration(d.uptimeMs)}`,
    `socket   ${d.socket}`,
    `config   ${d.config}`,
  ];
  if (d.lastReloadError) lines.push(`warning  config not loaded: ${d.lastReloadError.split('\n').join('; ')}`);
  lines.push('');
  if (reply.profiles.length === 0) {
    lines.push('no profiles');
  } else {
    lines.push(
      table(
        ['PROFILE', 'SOURCE', 'STATE', 'AGE', 'EXPIRES IN', 'HITS/MISSES', 'CONSUMERS', 'LAST ERROR'],
        reply.profiles.map((p) => [
          p.name,
          p.source,
          stateLabel(p),
          p.ageMs === null ? '-' : formatDuration(p.ageMs),
          p.expiresInMs === null ? '-' : p.expiresInMs < 0 ? `expired ${formatDuration(-p.expiresInMs)} ago` : formatDuration(p.expiresInMs),
          `${p.hits}/${p.misses}`,
          String(p.consumers),
          p.lastError ? `${p.lastError.code}: ${p.lastError.message}` : '-',
        ]),
      ),
    );
  }
  for (const s of reply.sources) for (const note of s.notes) lines.push(`${s.kind}: ${note}`);
  return `${lines.join('\n')}\n`;
}
