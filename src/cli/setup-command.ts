import fs from 'node:fs';
import os from 'node:os';
import { Option, type Command } from 'commander';
import { formatDuration } from '../config/duration.js';
import { collapseHome } from '../protocol/socket-path.js';
import { HELPER_KINDS, HELPER_SETTING, type HelperKind } from '../integration/helper-command.js';
import { die } from './output.js';

interface SetupOptions {
  profile: string;
  project?: boolean;
  force?: boolean;
  dryRun?: boolean;
  helper: HelperKind;
  config?: string;
}

export function registerSetup(program: Command): void {
  const setup = program.command('setup').description('connect keybroker to the programs that use it');
  setup
    .command('claude')
    .description("point Claude Code's apiKeyHelper at keybroker-shim in ~/.claude/settings.json")
    .option('--profile <name>', 'the keybroker profile to serve', 'default')
    .option('--project', 'write .claude/settings.json in this directory instead (needs workspace trust)')
    .option('--force', 'replace a different helper that is already set')
    .option('--dry-run', 'show what would change, and change nothing')
    .addOption(new Option('--helper <kind>', 'which helper: api-key (apiKeyHelper), aws-credentials (awsCredentialExport), otel-headers (otelHeadersHelper)').choices([...HELPER_KINDS]).default('api-key'))
    .option('--config <file>', 'keybroker config to read the profile from (default: $KEYBROKER_CONFIG, then ~/.config/keybroker/config.yaml)')
    .addHelpText(
      'after',
      `
Keeps every other setting, writes a timestamped backup beside the file first, and replaces the
file atomically with its mode unchanged. Also sets env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS to half
the profile's TTL (at most 5 minutes). Running it again changes nothing.

Examples:
  keybroker setup claude --profile work
  keybroker setup claude --helper aws-credentials --profile bedrock`,
    )
    .action(async (opts: SetupOptions) => {
      const [{ resolveConfigPath }, { setupClaude }, { summarizeConfig }, { findInstallLayout }] = await Promise.all([
        import('../config/load.js'),
        import('../integration/claude-setup.js'),
        import('../integration/config-summary.js'),
        import('../integration/install-layout.js'),
      ]);
      const layout = findInstallLayout();
      if (!fs.existsSync(layout.shim)) die('USAGE', `${layout.shim} is missing: build keybroker first (npm run build)`);
      const home = os.homedir();
      const configPath = resolveConfigPath({ flag: opts.config });
      const summary = await summarizeConfig(configPath.path);
      let profileTtlMs: number | undefined;
      if (summary.ok) {
        const profile = summary.profiles.find((p) => p.name === opts.profile);
        if (!profile && !opts.force) {
          die('USAGE', `no profile "${opts.profile}" in ${configPath.path} (profiles: ${summary.profiles.map((p) => p.name).join(', ') || 'none'}); add it, pick one with --profile, or pass --force`);
        }
        profileTtlMs = profile?.ttlMs;
        if (profile && opts.helper === 'aws-credentials' && profile.scheme !== 'aws-credentials') {
          process.stderr.write(`keybroker: warning: profile "${profile.name}" is a ${profile.scheme ?? 'unknown'}: source; awsCredentialExport needs an aws-credentials:// source\n`);
        }
      } else if (summary.missing) {
        process.stderr.write(`keybroker: warning: no config at ${configPath.path} yet (keybroker daemon writes a starter one); using the default TTL\n`);
      } else {
        process.stderr.write(`keybroker: warning: ${summary.error.split('\n')[0]}; using the default TTL\n`);
      }
      const result = await setupClaude({
        env: process.env,
        home,
        cwd: process.cwd(),
        platform: process.platform,
        shim: layout.shim,
        profile: opts.profile,
        helper: opts.helper,
        project: Boolean(opts.project),
        force: Boolean(opts.force),
        dryRun: Boolean(opts.dryRun),
        now: new Date(),
        profileTtlMs,
      });
      const file = collapseHome(result.file, home);
      const lines: string[] = [];
      if (result.changes.length === 0) {
        lines.push(`${file} (${result.scope} settings) already has ${HELPER_SETTING[opts.helper]} set for profile "${opts.profile}": nothing to change`);
      } else {
        lines.push(`${opts.dryRun ? 'would change' : result.created ? 'created' : 'changed'} ${file} (${result.scope} settings):`);
        for (const c of result.changes) lines.push(`  ${c.key}: ${c.before === undefined ? '(unset)' : c.before} -> ${c.after}`);
        if (profileTtlMs !== undefined && opts.helper === 'api-key') lines.push(`  (profile "${opts.profile}" has a TTL of ${formatDuration(profileTtlMs)})`);
        if (result.backup) lines.push(`backup: ${collapseHome(result.backup, home)}`);
        if (result.mode !== undefined) lines.push(`mode: ${result.mode.toString(8).padStart(4, '0')}`);
        if (result.undo.length > 0) lines.push(`undo: ${result.undo.join(' && ')}`);
        if (!opts.dryRun) lines.push('Claude Code picks this up on its next start; check everything with: keybroker doctor');
      }
      process.stdout.write(`${lines.join('\n')}\n`);
      for (const w of result.warnings) process.stderr.write(`keybroker: warning: ${w}\n`);
    });
}
