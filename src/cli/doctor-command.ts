import os from 'node:os';
import type { Command } from 'commander';
import { CLAUDE_MANAGED_DIR_ENV } from '../integration/claude-settings.js';
import type { DoctorCheck, DoctorOptions } from '../integration/doctor.js';
import { BUILD_ID, VERSION } from '../version.js';
import { coloursFor } from './colour.js';
import { CliExit } from './output.js';
import { configOptionHelp } from './help-text.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'which credential Claude Code will use, and what stands between it and keybroker (never prints a value)',
    )
    .option('--config <file>', configOptionHelp())
    .option('--no-fetch', 'do not ask the daemon for each profile (no backend reads, no 1Password prompts)')
    .option('--json', 'print the checks as JSON')
    .addHelpText(
      'after',
      `
One line per check: ok, warn or fail, and the fix. Exits 1 when any check fails.
Checks: the credential Claude Code will use (cloud provider flags > ANTHROPIC_AUTH_TOKEN >
ANTHROPIC_API_KEY > apiKeyHelper > CLAUDE_CODE_OAUTH_TOKEN > subscription login), variables that
shadow the helper (with the shell startup line that sets them), cloud provider flags without
credentials, a helper only in project settings, the shim path, whether the native shim is built
here (native-shim, with the command that builds it), the helper TTL, the config, which profile a
session started in this directory gets and why (profile-here: "~/code/acme → work (directories:
~/code/acme)"), Codex's config and auth command where there is one (codex-config, codex-auth,
codex-profile, codex-refresh), the socket's permissions, the daemon, each profile (timed), and the
1Password read budget.

Examples:
  keybroker doctor
  cd ~/code/acme && keybroker doctor --no-fetch`,
    )
    .action(async (opts: { config?: string; fetch: boolean; json?: boolean }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ socket?: string }>();
      const [{ renderCheck, renderDoctorSummary }, { startProgress }] = await Promise.all([
        import('../integration/doctor.js'),
        import('./progress.js'),
      ]);
      const colours = coloursFor(process.stdout);
      // Each check prints as it finishes; a wait of more than a second names what it waits for,
      // on a terminal only (a log or a pipe gets the checks and nothing else).
      const checks = await doctorChecks({
        configFlag: opts.config,
        socketFlag: globals.socket,
        fetchProfiles: opts.fetch,
        ...(!opts.json && {
          onCheck: (c) => process.stdout.write(renderCheck(c, colours)),
          onWait: (what) => startProgress(`waiting for ${what}`, process.stderr, { afterMs: 1000, terminalOnly: true }),
        }),
      });
      process.stdout.write(opts.json ? `${JSON.stringify(checks, null, 2)}\n` : renderDoctorSummary(checks, colours));
      if (checks.some((c) => c.status === 'fail')) throw new CliExit(1);
    });
}

/** Doctor's checks for this process's user, environment and installation (init ends with them too). */
export async function doctorChecks(
  options: {
    configFlag: string | undefined;
    socketFlag: string | undefined;
    fetchProfiles: boolean;
  } & Pick<DoctorOptions, 'onCheck' | 'onWait'>,
): Promise<DoctorCheck[]> {
  const [{ runDoctor }, { findInstallLayout }] = await Promise.all([
    import('../integration/doctor.js'),
    import('../integration/install-layout.js'),
  ]);
  return runDoctor({
    env: process.env,
    home: os.homedir(),
    cwd: process.cwd(),
    platform: process.platform,
    managedDir: process.env[CLAUDE_MANAGED_DIR_ENV] || undefined,
    uid: process.getuid?.(),
    version: VERSION,
    build: BUILD_ID,
    ...options,
    install: findInstallLayout(),
  });
}
