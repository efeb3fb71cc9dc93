import v8 from 'node:v8';
import type { Command } from 'commander';
import { resolveSocketPath } from '../protocol/socket-path.js';

/** systemd socket activation: the listening socket is fd 3 when LISTEN_PID is us. */
export function inheritedListenFd(env: NodeJS.ProcessEnv, pid: number = process.pid): number | undefined {
  if (env.LISTEN_PID !== String(pid)) return undefined;
  const count = Number(env.LISTEN_FDS);
  return Number.isInteger(count) && count >= 1 ? 3 : undefined;
}

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description('run the broker daemon in the foreground (logs: JSON lines on stderr)')
    .option('--config <file>', 'config file (default: $KEYBROKER_CONFIG, then $XDG_CONFIG_HOME/keybroker/config.yaml)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (default: $KEYBROKER_LOG_LEVEL, then info)')
    .addHelpText(
      'after',
      `
On first run without a config, writes a commented starter config to the default path.
Signals: SIGHUP reloads the config (a bad config keeps the old one running); SIGTERM or
SIGINT stop accepting, finish replies in flight and remove the socket.

Examples:
  keybroker daemon
  keybroker daemon --config ./keybroker.yaml --log-level debug
  KEYBROKER_SOCKET=/tmp/kb/sock keybroker daemon`,
    )
    .action(async (opts: { config?: string; logLevel?: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ socket?: string }>();
      const listenFd = inheritedListenFd(process.env);
      // The inherited fds belong to us only; children (exec: sources) must not see them.
      delete process.env.LISTEN_PID;
      delete process.env.LISTEN_FDS;
      delete process.env.LISTEN_FDNAMES;
      // A long-lived daemon with a tiny live set: keep V8's young generation at its initial size
      // instead of letting it grow to tens of MiB during start-up. Costs a few more (cheap)
      // scavenges; saves ~5 MiB of resident memory for as long as the daemon runs.
      v8.setFlagsFromString('--semi-space-growth-factor=1');
      const [{ runDaemon }, { resolveConfigPath }] = await Promise.all([import('../daemon/lifecycle.js'), import('../config/load.js')]);
      const code = await runDaemon({
        config: resolveConfigPath({ flag: opts.config }),
        socket: resolveSocketPath({ flag: globals.socket }),
        logLevel: opts.logLevel ?? process.env.KEYBROKER_LOG_LEVEL,
        listenFd,
      });
      // Logs are written synchronously, so nothing is lost; exit even if an adapter left a handle open.
      process.exit(code);
    });
}
