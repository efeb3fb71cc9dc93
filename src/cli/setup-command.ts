import fs from 'node:fs';
import os from 'node:os';
import { Option, type Command } from 'commander';
import { collapseHome } from '../client/socket-path.js';
import { CLAUDE_MANAGED_DIR_ENV } from '../integration/claude-settings.js';
import type { SandboxWanted } from '../integration/claude-sandbox.js';
import { HELPER_KINDS, HELPER_SETTING, type HelperKind } from '../integration/helper-command.js';
import type { AdoptResult } from '../integration/claude-adopt.js';
import { undoReplace } from '../integration/file-replace.js';
import type { SetupClaudeResult } from '../integration/claude-setup.js';
import type { ManagedLocation } from '../config/managed.js';
import { resolveSocketPath } from '../client/socket-path.js';
import { die } from './output.js';
import { configOptionHelp } from './help-text.js';
import { registerSetupCodex } from './setup-codex-command.js';
import { changedFileLines, undoLines } from './setup-output.js';

interface SetupOptions {
  profile?: string;
  project?: boolean;
  managed?: boolean;
  force?: boolean;
  dryRun?: boolean;
  helper: HelperKind;
  config?: string;
  adopt?: boolean;
  asExec?: boolean;
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
    .option(
      '--adopt',
      'make the apiKeyHelper already set a keybroker profile, check both give the same key, then switch it to keybroker-shim',
    )
    .option('--as-exec', 'with --adopt: keep the helper command as it is (an exec: source), not a native source')
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

With --adopt, the apiKeyHelper you have (op read …, vault kv get …, aws secretsmanager …, any
command) becomes a profile: op read op://V/I/F becomes op://V/I/F, vault kv get -field=F PATH
becomes vault://PATH#F, aws secretsmanager get-secret-value --secret-id ID --query SecretString
--output text becomes aws-sm://ID, where that is exact; anything else stays the command
(exec:COMMAND). keybroker runs the old command and reads the new source, and compares the two
values (never shown): only if they are equal are the profile written (config backup first) and
the helper switched. The old command failing (its exit status) or the two differing (exit 22,
MISMATCH) changes nothing; the new source failing alone keeps the command (exec:) and says so. The
profile is --profile, else "default" when it is free, else a name from the source; a profile of
yours is never overwritten. A running daemon reloads the config.

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
  keybroker setup claude --adopt --dry-run     # what adopting the current helper would do
  keybroker setup claude --adopt
  keybroker setup claude --profile work
  keybroker setup claude --helper aws-credentials --profile bedrock
  sudo keybroker setup claude --managed --profile org`,
    )
    .action(async (opts: SetupOptions, cmd: Command) => {
      if (opts.adopt) {
        await adoptFromCli(opts, cmd.optsWithGlobals<{ socket?: string }>().socket);
        return;
      }
      if (opts.asExec) die('USAGE', '--as-exec goes with --adopt');
      await setupClaudeFromCli(opts);
    });
  registerSetupCodex(setup);
}

/** `keybroker setup claude` as the command runs it (init's last step runs it too). */
export async function setupClaudeFromCli(opts: SetupOptions): Promise<void> {
  const [{ resolveConfigPath }, { resolveManagedConfigPath }, { setupClaude }] = await Promise.all([
    import('../config/load.js'),
    import('../config/managed.js'),
    import('../integration/claude-setup.js'),
  ]);
  const shim = await installedShim(opts.helper);
  const home = os.homedir();
  const managedLocation = opts.managed ? resolveManagedConfigPath() : undefined;
  if (opts.managed && !managedLocation && !opts.force) {
    die(
      'USAGE',
      `no keybroker managed config (/etc/keybroker/managed.yaml, or $KEYBROKER_MANAGED_CONFIG) defines ${opts.profile === undefined ? 'the profiles' : `profile "${opts.profile}"`} for every user; install one, or pass --force`,
    );
  }
  const configPath = managedLocation ? managedLocation.path : resolveConfigPath({ flag: opts.config }).path;
  const profileTtlMs = await helperProfileTtl(opts, configPath, managedLocation);
  const sandbox = opts.sandbox ? await sandboxWanted(home, opts) : undefined;
  const result = await setupClaude({
    env: process.env,
    home,
    cwd: process.cwd(),
    platform: process.platform,
    shim,
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
  process.stdout.write(
    `${[...settingsChangeLines(result, opts, profileTtlMs, home), ...undoLines(result.undo)].join('\n')}\n`,
  );
  if (result.changes.length > 0 && !opts.dryRun)
    process.stdout.write(
      `Claude Code picks this up on its next start; check everything with: keybroker doctor${opts.managed ? ' (as each user)' : ''}\n`,
    );
  for (const w of [...result.warnings, ...(sandbox?.warnings ?? [])])
    process.stderr.write(`keybroker: warning: ${w}\n`);
}

/** The shim this installation writes into a helper, once it is sure the path lasts. */
async function installedShim(helper: HelperKind): Promise<string> {
  const { findInstallLayout, helperShim, lastingInstallError } = await import('../integration/install-layout.js');
  const layout = findInstallLayout();
  const ephemeral = lastingInstallError(layout, `Claude Code's ${HELPER_SETTING[helper]}`);
  if (ephemeral) throw ephemeral;
  if (!fs.existsSync(layout.shim)) die('USAGE', `${layout.shim} is missing: build keybroker first (npm run build)`);
  return helperShim(layout, helper);
}

/**
 * The TTL the helper's is sized by: the named profile's, or without one the shortest a project can
 * get (the default and every profile directories: maps to). Refuses a profile the config lacks.
 */
async function helperProfileTtl(
  opts: SetupOptions,
  configPath: string,
  managed: ManagedLocation | undefined,
): Promise<number | undefined> {
  const { summarizeConfig, summarizeManagedConfig } = await import('../integration/config-summary.js');
  const summary = (await summarizeManagedConfig(managed)) ?? (await summarizeConfig(configPath));
  if (!summary.ok) {
    if (opts.managed && !opts.force) die('CONFIG_INVALID', summary.error.split('\n')[0]!);
    process.stderr.write(
      summary.missing
        ? `keybroker: warning: no config at ${configPath} yet (keybroker daemon writes a starter one); using the default TTL\n`
        : `keybroker: warning: ${summary.error.split('\n')[0]}; using the default TTL\n`,
    );
    return undefined;
  }
  const known = summary.profiles.map((p) => p.name).join(', ') || 'none';
  if (opts.profile !== undefined) {
    const profile = summary.profiles.find((p) => p.name === opts.profile);
    if (!profile && !opts.force) {
      die(
        'USAGE',
        `no profile "${opts.profile}" in ${configPath} (profiles: ${known}); add it, pick one with --profile, or pass --force`,
      );
    }
    if (profile && opts.helper === 'aws-credentials' && profile.scheme !== 'aws-credentials') {
      process.stderr.write(
        `keybroker: warning: profile "${profile.name}" is a ${profile.scheme ?? 'unknown'}: source; awsCredentialExport needs an aws-credentials:// source\n`,
      );
    }
    return profile?.ttlMs;
  }
  const names = new Set(['default', ...Object.values(summary.directories)]);
  const reachable = summary.profiles.filter((p) => names.has(p.name));
  if (!summary.profiles.some((p) => p.name === 'default')) {
    if (Object.keys(summary.directories).length === 0 && !opts.force) {
      die(
        'USAGE',
        `no profile "default" and no directories: map in ${configPath} (profiles: ${known}); add one, pick a profile with --profile, or pass --force`,
      );
    }
    process.stderr.write(
      `keybroker: warning: no profile "default" in ${configPath}: outside the directories: map the helper fails; add one or pick a profile with --profile\n`,
    );
  }
  return reachable.length > 0 ? Math.min(...reachable.map((p) => p.ttlMs)) : undefined;
}

/** What setupClaude changed (or would), for a person: the file, each change, the backup and mode. */
function settingsChangeLines(
  result: SetupClaudeResult,
  opts: Pick<SetupOptions, 'profile' | 'helper' | 'dryRun' | 'sandbox'>,
  profileTtlMs: number | undefined,
  home: string,
): string[] {
  const file = collapseHome(result.file, home);
  const serving = opts.profile === undefined ? 'the profile of each project directory' : `profile "${opts.profile}"`;
  if (result.changes.length === 0)
    return [
      `${file} (${result.scope} settings) already has ${HELPER_SETTING[opts.helper]} set for ${serving}${opts.sandbox ? " and Claude Code's sandbox set up" : ''}: nothing to change`,
    ];
  const fitted =
    profileTtlMs !== undefined && opts.helper === 'api-key'
      ? { profile: opts.profile, ttlMs: profileTtlMs }
      : undefined;
  return changedFileLines(result, `${file} (${result.scope} settings)`, Boolean(opts.dryRun), fitted, home);
}

/**
 * `keybroker setup claude --adopt` (and `keybroker init --adopt`): adopt, then say what happened —
 * the translation, both checks, the profile written, the daemon, the settings changed, and one
 * undo line for both files.
 */
export async function adoptFromCli(opts: SetupOptions, socketFlag: string | undefined): Promise<AdoptResult> {
  if (opts.managed) die('USAGE', "--adopt works on your own or the project's settings, not --managed");
  if (opts.force) die('USAGE', '--adopt replaces only the helper it adopted: --force does not go with it');
  if (opts.helper !== 'api-key') die('USAGE', '--adopt adopts apiKeyHelper only');
  if (opts.sandbox)
    die('USAGE', '--sandbox does not go with --adopt: adopt first, then run keybroker setup claude --sandbox');
  // Loaded when it runs: this bundle also starts the daemon, which needs none of it.
  const [{ resolveConfigPath }, { adoptHelper }, { startProgress }] = await Promise.all([
    import('../config/load.js'),
    import('../integration/claude-adopt.js'),
    import('./progress.js'),
  ]);
  const home = os.homedir();
  const configFile = resolveConfigPath({ flag: opts.config }).path;
  const result = await adoptHelper({
    env: process.env,
    home,
    cwd: process.cwd(),
    platform: process.platform,
    configFile,
    profile: opts.profile,
    project: Boolean(opts.project),
    asExec: Boolean(opts.asExec),
    dryRun: Boolean(opts.dryRun),
    now: new Date(),
    shim: await installedShim('api-key'),
    socket: resolveSocketPath({ flag: socketFlag }).path,
    progress: (what) => startProgress(`checking: ${what}`),
  });
  process.stdout.write(`${adoptionLines(result, opts, home).join('\n')}\n`);
  if (result.status !== 'already')
    for (const w of result.settings.warnings) process.stderr.write(`keybroker: warning: ${w}\n`);
  return result;
}

function adoptionLines(result: AdoptResult, opts: SetupOptions, home: string): string[] {
  if (result.status === 'already')
    return [
      `${collapseHome(result.settingsFile, home)} already runs keybroker-shim${result.profile === undefined ? '' : ` for profile "${result.profile}"`}: nothing to adopt`,
    ];
  const { plan, config, reload, settings } = result;
  const dry = result.status === 'dry-run';
  const lines = [`apiKeyHelper in ${collapseHome(plan.settingsFile, home)}: ${plan.helper}`];
  const { translation } = plan;
  if (translation.kind === 'native') lines.push(`  translates to ${translation.source}`);
  else lines.push(`  kept as the command it is (exec:): ${translation.why}`);
  lines.push(`  the current helper answered in ${plan.timings.old} ms (fingerprint ${plan.fingerprint.fingerprint})`);
  if (plan.fallback)
    lines.push(
      `  ${plan.fallback.from} failed here (${plan.fallback.error.code}: ${plan.fallback.error.message}): the profile keeps the command instead (exec:)`,
    );
  else if (plan.timings.native !== undefined)
    lines.push(`  ${translation.source} gives the same key, in ${plan.timings.native} ms`);
  const shownSource = plan.source.startsWith('exec:') ? `exec:${plan.helper}` : plan.source;
  const configFile = collapseHome(plan.configFile, home);
  lines.push(
    plan.existed
      ? `profile "${plan.profile}" is in ${configFile} already, reading ${shownSource}`
      : `${dry ? 'would add' : 'added'} profile "${plan.profile}" (${shownSource}) to ${configFile}${config?.backup ? ` (backup: ${collapseHome(config.backup, home)})` : ''}`,
  );
  if (reload?.daemon === 'reloaded')
    lines.push(`the running daemon (pid ${reload.pid}) reloaded ${collapseHome(reload.config, home)}`);
  if (reload?.daemon === 'refused')
    lines.push(`the running daemon (pid ${reload.pid}) refused the config: ${reload.error.split('\n')[0]}`);
  lines.push(
    ...settingsChangeLines(settings, { ...opts, profile: result.helperProfile, dryRun: dry }, undefined, home),
  );
  const configUndo = config && undoReplace(config);
  lines.push(...undoLines([...settings.undo, ...(configUndo ? [configUndo] : [])]));
  if (!dry) lines.push('Claude Code picks this up on its next start; check everything with: keybroker doctor');
  return lines;
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
