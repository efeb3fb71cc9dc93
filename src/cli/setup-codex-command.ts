// `keybroker setup codex`: the subcommand of `setup` that wires Codex (src/integration/codex-setup.ts).
import fs from 'node:fs';
import os from 'node:os';
import type { Command } from 'commander';
import { collapseHome } from '../client/socket-path.js';
import { die } from './output.js';
import { configOptionHelp } from './help-text.js';
import { changedFileLines, undoLines } from './setup-output.js';

interface SetupCodexFlags {
  provider?: string;
  profile?: string;
  force?: boolean;
  dryRun?: boolean;
  config?: string;
}

export function registerSetupCodex(setup: Command): void {
  setup
    .command('codex')
    .description("point a Codex model provider's auth command at keybroker-shim in ~/.codex/config.toml")
    .option('--provider <id>', 'the model provider to set it for (default: the one model_provider names)')
    .option(
      '--profile <name>',
      'always serve this profile (default: none — the daemon picks by the project directory, else "default")',
    )
    .option('--force', 'replace a different auth command, and remove what Codex refuses beside one (env_key, …)')
    .option('--dry-run', 'show what would change, and change nothing')
    .option('--config <file>', configOptionHelp('keybroker config to read the profile from'))
    .addHelpText(
      'after',
      `
Writes [model_providers.ID].auth in $CODEX_HOME/config.toml (default ~/.codex/config.toml):
command = this installation's shim, args = ["--refresh-interval-ms", N, PROFILE],
refresh_interval_ms = N (half the profile's TTL, at most 5 minutes) and timeout_ms. Keeps every
other line of the file as it was, writes a timestamped backup beside it first, and replaces the
file atomically with its mode unchanged. Running it again changes nothing.

A provider that does not exist yet is created for OpenAI's API (set base_url in it for another
endpoint); Codex uses it once model_provider names it. Codex's built-in providers (openai,
ollama, lmstudio, amazon-bedrock) take no auth command: name one of your own.

Examples:
  keybroker setup codex
  keybroker setup codex --provider openai-keybroker --profile work
  keybroker setup codex --dry-run`,
    )
    .action(async (opts: SetupCodexFlags) => {
      // Refused from npx's cache before anything else loads (the TOML library lives in node_modules).
      const layouts = await import('../integration/install-layout.js');
      const layout = layouts.findInstallLayout();
      const ephemeral = layouts.lastingInstallError(layout, "Codex's auth command");
      if (ephemeral) throw ephemeral;
      const [{ resolveConfigPath }, { setupCodex }, { servedProfiles, summarizeConfig }] = await Promise.all([
        import('../config/load.js'),
        import('../integration/codex-setup.js'),
        import('../integration/config-summary.js'),
      ]);
      if (!fs.existsSync(layout.shim)) die('USAGE', `${layout.shim} is missing: build keybroker first (npm run build)`);
      const home = os.homedir();
      const configPath = resolveConfigPath({ flag: opts.config });
      const summary = await summarizeConfig(configPath.path);
      let served: Array<{ name: string; ttlMs: number; timeoutMs: number }> = [];
      if (summary.ok) {
        const s = servedProfiles(summary, opts.profile);
        if (s.problem && !opts.force)
          die('USAGE', `${s.problem}; add it, pick a profile with --profile, or pass --force`);
        const note = s.problem ?? s.warning;
        if (note) process.stderr.write(`keybroker: warning: ${note}\n`);
        served = s.profiles;
      } else if (summary.missing) {
        process.stderr.write(
          `keybroker: warning: no config at ${configPath.path} yet (keybroker daemon writes a starter one); using the default TTL\n`,
        );
      } else {
        process.stderr.write(`keybroker: warning: ${summary.error.split('\n')[0]}; using the default TTL\n`);
      }
      const profileTtlMs = served.length > 0 ? Math.min(...served.map((p) => p.ttlMs)) : undefined;
      const result = await setupCodex({
        env: process.env,
        home,
        shim: layouts.helperShim(layout, 'api-key'),
        provider: opts.provider,
        profile: opts.profile,
        force: Boolean(opts.force),
        dryRun: Boolean(opts.dryRun),
        now: new Date(),
        profileTtlMs,
        profileTimeoutMs: served.length > 0 ? Math.max(...served.map((p) => p.timeoutMs)) : undefined,
      });
      const file = collapseHome(result.file, home);
      const lines: string[] = [];
      if (result.changes.length === 0) {
        lines.push(`${file} already runs keybroker-shim for provider "${result.provider}": nothing to change`);
      } else {
        const fitted = profileTtlMs === undefined ? undefined : { profile: opts.profile, ttlMs: profileTtlMs };
        lines.push(...changedFileLines(result, file, Boolean(opts.dryRun), fitted, home));
        lines.push(...undoLines(result.undo));
        if (!opts.dryRun) lines.push('Codex picks this up on its next start; check everything with: keybroker doctor');
      }
      process.stdout.write(`${lines.join('\n')}\n`);
      for (const w of result.warnings) process.stderr.write(`keybroker: warning: ${w}\n`);
    });
}
