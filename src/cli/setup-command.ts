import fs from 'node:fs';
import os from 'node:os';
import { Option, type Command } from 'commander';
import { formatDuration } from '../config/duration.js';
import { collapseHome } from '../client/socket-path.js';
import { CLAUDE_MANAGED_DIR_ENV } from '../integration/claude-settings.js';
import { formatMode } from '../client/file-mode.js';
import type { SandboxWanted } from '../integration/claude-sandbox.js';
import { HELPER_KINDS, HELPER_SETTING, type HelperKind } from '../integration/helper-command.js';
import { die } from './output.js';
import { configOptionHelp } from './help-text.js';

interface SetupOptions {
  profile?: string;
  project?: boolean;
  managed?: boolean;
  force?: boolean;
  dryRun?: boolean;
  helper: HelperKind;
  config?: string;
  sandbox?: boolean;
}

export function registerSetup(program: Command): void {
  const setup = program.command('setup').description('connect keybroker to the programs that use it');
  setup
    .command('claude')
    .description("point Claude Code's apiKeyHelper at keybroker-shim in ~/.claude/settings.json")
    .option(
      '--profile <name>',
      'always serve this profile (default: none — the daemon picks by the project directory, else "default")',
    )
    .addOption(
      new Option(
        '--project',
        'write .claude/settings.json in this directory instead (needs workspace trust)',
      ).conflicts('managed'),
    )
    .option(
      '--managed',
      "write Claude Code's managed settings instead, for every user of this machine (as root; /etc/claude-code/managed-settings.json on Linux)",
    )
    .option('--force', 'replace a different helper that is already set')
    .option('--dry-run', 'show what would change, and change nothing')
    .addOption(
      new Option(
        '--helper <kind>',
        'which helper: api-key (apiKeyHelper), aws-credentials (awsCredentialExport), otel-headers (otelHeadersHelper)',
      )
        .choices([...HELPER_KINDS])
        .default('api-key'),
    )
    .option('--config <file>', configOptionHelp('keybroker config to read the profile from'))
    .option(
      '--sandbox',
      "also turn on Claude Code's sandbox for the agent's commands, with every file that leads to a key unreadable inside it",
    )
    .addHelpText(
      'after',
      `
Keeps every other setting, writes a timestamped backup beside the file first, and replaces the
file atomically with its mode unchanged. Also sets env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS to half
the profile's TTL (at most 5 minutes). Running it again changes nothing.

Without --profile the helper names no profile: Claude Code runs it in the project directory and
the daemon serves the profile the config's directories: map gives that directory, else "default".
A helper written by an earlier setup as "keybroker-shim default" is rewritten (backup first).

With --managed, the profile is looked up in keybroker's managed config (every user needs it),
the file is created mode 0644, and $KEYBROKER_CLAUDE_MANAGED_DIR names another directory than
Claude Code's (/etc/claude-code, or /Library/Application Support/ClaudeCode on macOS).

With --sandbox, the same file also gets sandbox.enabled, failIfUnavailable (no silent fallback
to running unconfined), allowUnsandboxedCommands: false, and sandbox.filesystem.denyRead entries
for the keybroker config directory, every key and token file the config names, and the state
directory (audit trail and salt), with a Read(…) rule in permissions.deny for each (Claude
Code's own Read, Grep and Glob tools run outside the sandbox); variables that hold a credential
go in sandbox.credentials.envVars (mode deny). Not the socket: the sandbox refuses its connect
already. Check the result with: keybroker doctor (its sandbox-* lines).

Examples:
  keybroker setup claude
  keybroker setup claude --sandbox
  keybroker setup claude --profile work
  keybroker setup claude --helper aws-credentials --profile bedrock
  sudo keybroker setup claude --managed --profile org`,
    )
    .action(async (opts: SetupOptions) => {
      const [
        { resolveConfigPath },
        { resolveManagedConfigPath },
        { setupClaude },
        { summarizeConfig, summarizeManagedConfig },
        { findInstallLayout, helperShim, lastingInstallError },
      ] = await Promise.all([
        import('../config/load.js'),
        import('../config/managed.js'),
        import('../integration/claude-setup.js'),
        import('../integration/config-summary.js'),
        import('../integration/install-layout.js'),
      ]);
      const layout = findInstallLayout();
      const ephemeral = lastingInstallError(layout, `Claude Code's ${HELPER_SETTING[opts.helper]}`);
      if (ephemeral) throw ephemeral;
      if (!fs.existsSync(layout.shim)) die('USAGE', `${layout.shim} is missing: build keybroker first (npm run build)`);
      const home = os.homedir();
      const managedLocation = opts.managed ? resolveManagedConfigPath() : undefined;
      if (opts.managed && !managedLocation && !opts.force) {
        die(
          'USAGE',
          `no keybroker managed config (/etc/keybroker/managed.yaml, or $KEYBROKER_MANAGED_CONFIG) defines ${opts.profile === undefined ? 'the profiles' : `profile "${opts.profile}"`} for every user; install one, or pass --force`,
        );
      }
      const configPath = managedLocation ? { path: managedLocation.path } : resolveConfigPath({ flag: opts.config });
      const summary = (await summarizeManagedConfig(managedLocation)) ?? (await summarizeConfig(configPath.path));
      let profileTtlMs: number | undefined;
      if (summary.ok && opts.profile === undefined) {
        // Any profile a project can get: the default and every one directories: maps to. The
        // helper TTL fits the shortest of them.
        const names = new Set(['default', ...Object.values(summary.directories)]);
        const reachable = summary.profiles.filter((p) => names.has(p.name));
        const known = summary.profiles.map((p) => p.name).join(', ') || 'none';
        if (!summary.profiles.some((p) => p.name === 'default')) {
          if (Object.keys(summary.directories).length === 0 && !opts.force) {
            die(
              'USAGE',
              `no profile "default" and no directories: map in ${configPath.path} (profiles: ${known}); add one, pick a profile with --profile, or pass --force`,
            );
          }
          process.stderr.write(
            `keybroker: warning: no profile "default" in ${configPath.path}: outside the directories: map the helper fails; add one or pick a profile with --profile\n`,
          );
        }
        profileTtlMs = reachable.length > 0 ? Math.min(...reachable.map((p) => p.ttlMs)) : undefined;
      } else if (summary.ok) {
        const profile = summary.profiles.find((p) => p.name === opts.profile);
        if (!profile && !opts.force) {
          die(
            'USAGE',
            `no profile "${opts.profile}" in ${configPath.path} (profiles: ${summary.profiles.map((p) => p.name).join(', ') || 'none'}); add it, pick one with --profile, or pass --force`,
          );
        }
        profileTtlMs = profile?.ttlMs;
        if (profile && opts.helper === 'aws-credentials' && profile.scheme !== 'aws-credentials') {
          process.stderr.write(
            `keybroker: warning: profile "${profile.name}" is a ${profile.scheme ?? 'unknown'}: source; awsCredentialExport needs an aws-credentials:// source\n`,
          );
        }
      } else if (opts.managed && !opts.force) {
        die('CONFIG_INVALID', summary.error.split('\n')[0]!);
      } else if (summary.missing) {
        process.stderr.write(
          `keybroker: warning: no config at ${configPath.path} yet (keybroker daemon writes a starter one); using the default TTL\n`,
        );
      } else {
        process.stderr.write(`keybroker: warning: ${summary.error.split('\n')[0]}; using the default TTL\n`);
      }
      const sandbox = opts.sandbox ? await sandboxWanted(home, opts) : undefined;
      const result = await setupClaude({
        env: process.env,
        home,
        cwd: process.cwd(),
        platform: process.platform,
        shim: helperShim(layout, opts.helper),
        profile: opts.profile,
        helper: opts.helper,
        project: Boolean(opts.project),
        managed: Boolean(opts.managed),
        managedDir: process.env[CLAUDE_MANAGED_DIR_ENV] || undefined,
        force: Boolean(opts.force),
        dryRun: Boolean(opts.dryRun),
        now: new Date(),
        profileTtlMs,
        sandbox: sandbox?.wanted,
      });
      const file = collapseHome(result.file, home);
      const lines: string[] = [];
      const serving =
        opts.profile === undefined ? 'the profile of each project directory' : `profile "${opts.profile}"`;
      if (result.changes.length === 0) {
        lines.push(
          `${file} (${result.scope} settings) already has ${HELPER_SETTING[opts.helper]} set for ${serving}${opts.sandbox ? " and Claude Code's sandbox set up" : ''}: nothing to change`,
        );
      } else {
        lines.push(
          `${opts.dryRun ? 'would change' : result.created ? 'created' : 'changed'} ${file} (${result.scope} settings):`,
        );
        for (const c of result.changes)
          lines.push(`  ${c.key}: ${c.before === undefined ? '(unset)' : c.before} -> ${c.after}`);
        if (profileTtlMs !== undefined && opts.helper === 'api-key') {
          lines.push(
            opts.profile === undefined
              ? `  (the shortest TTL of the profiles it can serve is ${formatDuration(profileTtlMs)})`
              : `  (profile "${opts.profile}" has a TTL of ${formatDuration(profileTtlMs)})`,
          );
        }
        if (result.backup) lines.push(`backup: ${collapseHome(result.backup, home)}`);
        if (result.mode !== undefined) lines.push(`mode: ${formatMode(result.mode)}`);
        if (result.undo.length > 0) lines.push(`undo: ${result.undo.join(' && ')}`);
        if (!opts.dryRun)
          lines.push(
            `Claude Code picks this up on its next start; check everything with: keybroker doctor${opts.managed ? ' (as each user)' : ''}`,
          );
      }
      process.stdout.write(`${lines.join('\n')}\n`);
      for (const w of [...result.warnings, ...(sandbox?.warnings ?? [])])
        process.stderr.write(`keybroker: warning: ${w}\n`);
    });
}

/**
 * What --sandbox denies: every path and variable that leads to a key (key-locations.ts), written
 * as ~/… so the file reads the same for every user; and what it could not cover.
 */
async function sandboxWanted(home: string, opts: SetupOptions): Promise<{ wanted: SandboxWanted; warnings: string[] }> {
  const [{ denyTargets, keyLocations }, { tildePath }, { findOnPath }] = await Promise.all([
    import('../integration/key-locations.js'),
    import('../integration/claude-sandbox.js'),
    import('../integration/service-manager.js'),
  ]);
  const locations = await keyLocations({
    env: process.env,
    home,
    platform: process.platform,
    configFlag: opts.config,
    everyUser: Boolean(opts.managed),
  });
  const warnings: string[] = [];
  if (locations.configProblem)
    warnings.push(
      `${locations.configProblem}: the key files its profiles name are not denied; fix it, then run this again`,
    );
  if (locations.opaque.length > 0)
    warnings.push(
      `profile${locations.opaque.length > 1 ? 's' : ''} ${locations.opaque.map((n) => `"${n}"`).join(', ')} run${locations.opaque.length > 1 ? '' : 's'} a command whose own credentials keybroker cannot see (a CLI's session or token file, GPG keys): add those files to sandbox.filesystem.denyRead yourself`,
    );
  for (const p of locations.holdingSocket)
    warnings.push(
      `${collapseHome(p.path, home)} holds keybroker's socket too, so it is not denied (sandboxed commands can read it): keep the socket elsewhere (KEYBROKER_SOCKET)`,
    );
  if (process.platform === 'linux') {
    const missing = [];
    for (const program of ['bwrap', 'socat']) if (!(await findOnPath(program, process.env.PATH))) missing.push(program);
    if (missing.length > 0)
      warnings.push(
        `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not on PATH: Claude Code's sandbox needs them, and with failIfUnavailable it will not start without them (sudo apt-get install bubblewrap socat)`,
      );
  }
  return {
    wanted: {
      denyRead: denyTargets(locations).map((p) => tildePath(p, home)),
      denyEnv: locations.env.map((e) => e.name),
    },
    warnings,
  };
}
