import os from 'node:os';
import type { Command } from 'commander';
import { parseDuration } from '../duration.js';
import { die, table } from './output.js';
import { renderError } from '../protocol/messages.js';

interface AuditOptions {
  since?: string;
  profile?: string;
  json?: boolean;
}

export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description('who got which key, from where, and how: the audit trail, newest last (never a value)')
    .option('--since <duration>', 'only records this recent, e.g. 30m, 2h, 7d')
    .option('--profile <name>', 'only records for this profile')
    .option('--json', 'one JSON object per line, as stored')
    .addHelpText(
      'after',
      `
The daemon appends one line per get, refresh, suspected rejection, key set and forget to
$XDG_STATE_HOME/keybroker/audit.jsonl (default ~/.local/state/keybroker/audit.jsonl; macOS:
~/Library/Application Support/keybroker/audit.jsonl), keeping one previous file. Each line names
the profile and how it was chosen (argument, directory, default), the consumer process the client
claims, the peer (the process that really connected, as the kernel reports it: needs the
daemon's hardening addon), its working directory, the outcome, and the key's version: the
source's version id, or a salted fingerprint. A consumer that is neither the peer nor one of its
ancestors is marked FALSE CLAIM ("consumerIs": "unrelated" in --json). "audit: false" in the
config turns it off.

Examples:
  keybroker audit --since 1h
  keybroker audit --profile work --json | jq 'select(.fingerprint == "3f9c0e1a2b4d")'
  keybroker audit --json | jq -r 'select(.consumer.claudeCode) | .cwd' | sort -u
  keybroker audit --json | jq 'select(.consumerIs == "unrelated")'`,
    )
    .action(async (opts: AuditOptions) => {
      const [{ readAudit, renderAudit, summaryLine }, { auditDir }] = await Promise.all([
        import('../audit/audit-reader.js'),
        import('../audit/audit-record.js'),
      ]);
      let sinceMs: number | undefined;
      const now = Date.now();
      if (opts.since !== undefined) {
        const parsed = parseDuration(opts.since);
        if (!parsed.ok) die('USAGE', `--since: ${parsed.reason}`);
        sinceMs = now - parsed.ms;
      }
      const dir = auditDir(process.env);
      const { BrokerError } = await import('../errors.js');
      let result;
      try {
        result = await readAudit(dir, { sinceMs, profile: opts.profile });
      } catch (err) {
        if (err instanceof BrokerError) die(err.code, renderError(err));
        die('INTERNAL', `cannot read the audit trail in ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      if (opts.json) {
        for (const r of result.records) process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      if (result.files.length === 0) {
        process.stdout.write(
          `no audit trail in ${dir} yet (the daemon writes it; "audit: false" in the config turns it off)\n`,
        );
        return;
      }
      if (result.records.length > 0) process.stdout.write(renderAudit(result.records, os.homedir(), table));
      const skipped =
        result.skipped > 0 ? `; ${result.skipped} unreadable line${result.skipped === 1 ? '' : 's'} skipped` : '';
      process.stdout.write(`${summaryLine(result.records.length, sinceMs, now)}${skipped}\n`);
    });
}
