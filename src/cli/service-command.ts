import fs from 'node:fs';
import os from 'node:os';
import type { Command } from 'commander';
import type { ServiceHost } from '../integration/service-manager.js';
import { CliExit, die } from './output.js';

// The service code loads only when a service command runs (the daemon never needs it).
const serviceManager = () => import('../integration/service-manager.js');

/** The service host for this process's user and installation (init's service step uses it too). */
export async function hostFromProcess(dryRun: boolean): Promise<ServiceHost> {
  const [{ findInstallLayout, lastingInstallError }, { realServiceHost }] = await Promise.all([
    import('../integration/install-layout.js'),
    serviceManager(),
  ]);
  const layout = findInstallLayout();
  const ephemeral = dryRun ? undefined : lastingInstallError(layout, 'the service');
  if (ephemeral) throw ephemeral;
  if (!dryRun && !fs.existsSync(layout.entry))
    die('USAGE', `${layout.entry} is missing: build keybroker first (npm run build)`);
  return realServiceHost({
    platform: process.platform,
    home: os.homedir(),
    uid: process.getuid?.() ?? 0,
    env: process.env,
    node: process.execPath,
    entry: layout.entry,
    systemdTemplates: layout.systemdDir,
    launchdTemplates: layout.launchdDir,
  });
}

export const out = { line: (text: string) => process.stdout.write(`${text}\n`) };

export function registerService(program: Command): void {
  const service = program
    .command('service')
    .description('run the daemon as a background service: systemd user units (Linux) or a LaunchAgent (macOS)');
  service
    .command('install')
    .description('write the service files with this node and keybroker, then enable and start them')
    .option('--dry-run', 'print what would be written and run, and change nothing')
    .addHelpText(
      'after',
      `
Linux: ~/.config/systemd/user/keybroker.{socket,service}; the socket is enabled and the daemon
starts on the first request (systemctl --user enable --now keybroker.socket).
macOS: ~/Library/LaunchAgents/dev.keybroker.agent.plist, loaded with launchctl bootstrap gui/<uid>;
logs in ~/Library/Logs/keybroker/. Run it again after moving node or keybroker.`,
    )
    .action(async (opts: { dryRun?: boolean }) => {
      const { installService } = await serviceManager();
      await installService(await hostFromProcess(Boolean(opts.dryRun)), { dryRun: Boolean(opts.dryRun), out });
    });
  service
    .command('uninstall')
    .description('stop the service and remove its files (your config stays)')
    .option('--dry-run', 'print what would be removed and run, and change nothing')
    .action(async (opts: { dryRun?: boolean }) => {
      const { uninstallService } = await serviceManager();
      await uninstallService(await hostFromProcess(true), { dryRun: Boolean(opts.dryRun), out });
    });
  service
    .command('status')
    .description(
      'is the service installed and running, and does the daemon answer (exit 1 if not installed or not active)',
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const [{ serviceStatus }, { resolveSocketPath }] = await Promise.all([
        serviceManager(),
        import('../client/socket-path.js'),
      ]);
      const host = await hostFromProcess(true);
      host.clientSocket = resolveSocketPath({ flag: cmd.optsWithGlobals<{ socket?: string }>().socket }).path;
      const status = await serviceStatus(host);
      for (const line of status.lines) out.line(line);
      if (!status.installed || !status.active) throw new CliExit(1);
    });
}
