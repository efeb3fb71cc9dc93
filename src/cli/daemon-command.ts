import os from 'node:os';
import v8 from 'node:v8';
import { Option, type Command } from 'commander';
import type { StartedBy } from '../protocol/messages.js';
import { reexecWithDaemonNodeFlags } from '../client/daemon-node-flags.js';
import { resolveSocketPath } from '../client/socket-path.js';
import { configOptionHelp } from './help-text.js';

/** systemd socket activation: the listening socket is fd 3 when LISTEN_PID is us. */
export function inheritedListenFd(env: NodeJS.ProcessEnv, pid: number = process.pid): number | undefined {
  if (env.LISTEN_PID !== String(pid)) return undefined;
  const count = Number(env.LISTEN_FDS);
  return Number.isInteger(count) && count >= 1 ? 3 : undefined;
}

/**
 * Who started this daemon. systemd sets SYSTEMD_EXEC_PID (and LISTEN_PID for socket activation)
 * to the pid it started, so a daemon a user starts from a shell inside a systemd service (a
 * terminal server) is not mistaken for the service; launchd names its job in XPC_SERVICE_NAME.
 */
export function detectStartedBy(env: NodeJS.ProcessEnv, autostarted: boolean, pid: number = process.pid): StartedBy {
  if (autostarted) return 'autostart';
  if (env.SYSTEMD_EXEC_PID === String(pid) || env.LISTEN_PID === String(pid)) return 'systemd';
  if ((env.XPC_SERVICE_NAME ?? '').startsWith('dev.keybroker.')) return 'launchd';
  return 'foreground';
}

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description(
      'run the broker daemon in the foreground (logs on stderr: readable lines on a terminal, JSON lines otherwise)',
    )
    .option('--config <file>', configOptionHelp())
    // Set by keybroker-shim when it starts a daemon: such a daemon may be replaced by a shim of a
    // newer build (see docs/commands.md#upgrades-keybroker-restart).
    .addOption(new Option('--autostarted', 'started by keybroker-shim').hideHelp())
    .option(
      '--telemetry-env',
      'telemetry may take its endpoint and headers from OTEL_EXPORTER_OTLP_* (the service units pass it)',
    )
    .option(
      '--log-level <level>',
      'fatal, error, warn, info, debug, trace or silent (default: $KEYBROKER_LOG_LEVEL, then info)',
    )
    .addHelpText(
      'after',
      `
On first run without a config, writes a commented starter config to the default path.
Logs: readable lines when stderr is a terminal, JSON lines otherwise (a service, a file, a pipe);
KEYBROKER_LOG_FORMAT=json or pretty chooses.
Signals: SIGHUP reloads the config (a bad config keeps the old one running); SIGTERM or
SIGINT stop accepting, finish replies in flight and remove the socket. SIGUSR1 is ignored
(it would open Node's inspector), and an inspector opened by --inspect is closed at start.
The daemon sets its own core-file limit to 0 and re-checks its socket directory every 2 s,
stopping (exit 18) if it was swapped, opened to others, or its socket removed.

Examples:
  keybroker daemon
  keybroker daemon --config ./keybroker.yaml --log-level debug
  KEYBROKER_SOCKET=/tmp/kb/sock keybroker daemon`,
    )
    .action(
      async (
        opts: { config?: string; logLevel?: string; autostarted?: boolean; telemetryEnv?: boolean },
        cmd: Command,
      ) => {
        // First thing: until a SIGUSR1 listener exists, that signal opens Node's inspector on
        // 127.0.0.1:9229 for anyone to run code in the daemon. runDaemon logs any that arrive later.
        process.on('SIGUSR1', () => {});
        const listenFd = inheritedListenFd(process.env);
        // Started by hand without the daemon's Node options: become a daemon started with them.
        reexecWithDaemonNodeFlags(listenFd !== undefined);
        const globals = cmd.optsWithGlobals<{ socket?: string }>();
        const startedBy = detectStartedBy(process.env, Boolean(opts.autostarted));
        // Children (exec: sources) get the user's environment, not npm's (see user-env.ts).
        const { userEnvironment } = await import('../daemon/user-env.js');
        const env = userEnvironment(process.env);
        if (env !== process.env) {
          for (const key of Object.keys(process.env)) if (!(key in env)) delete process.env[key];
          if (env.PATH !== undefined) process.env.PATH = env.PATH;
        }
        // The inherited fds belong to us only; children (exec: sources) must not see them.
        delete process.env.LISTEN_PID;
        delete process.env.LISTEN_FDS;
        delete process.env.LISTEN_FDNAMES;
        // A long-lived daemon with a tiny live set: keep V8's young generation at its initial size
        // instead of letting it grow to tens of MiB during start-up and load. Costs a few more
        // (cheap) scavenges. It still works on newer V8 and matters more there: measured with the
        // bench's 50 clients, the daemon's idle/peak RSS is 61/64 MiB with it and 65/73 without
        // on Node 20, and 71/86 with it and 75/154 without on Node 24. Tiering flags (--max-opt,
        // --jitless) would save more on 24 but do nothing when set here — V8 reads them once, when
        // the isolate starts (the options it does get from its start are in daemon-node-flags.ts)
        // — and --jitless turns off WebAssembly, which the 1Password SDK needs; --max-opt costs
        // three quarters of the throughput.
        v8.setFlagsFromString('--semi-space-growth-factor=1');
        const [{ runDaemon }, { resolveConfigPath }] = await Promise.all([
          import('../daemon/lifecycle.js'),
          import('../config/load.js'),
        ]);
        const code = await runDaemon({
          config: resolveConfigPath({ flag: opts.config }),
          socket: resolveSocketPath({ flag: globals.socket }),
          logLevel: opts.logLevel ?? process.env.KEYBROKER_LOG_LEVEL,
          listenFd,
          startedBy,
          // Never for a daemon the shim started: its environment is a Claude Code session's.
          telemetryEnv: Boolean(opts.telemetryEnv) && !opts.autostarted,
          // Read only when telemetry reports it (the settings module is not loaded otherwise).
          claudeSandbox: async () => {
            const [settings, sandbox] = await Promise.all([
              import('../integration/claude-settings.js'),
              import('../integration/claude-sandbox.js'),
            ]);
            return sandbox.claudeSandboxEnabled({
              env,
              home: env.HOME || os.homedir(),
              platform: process.platform,
              managedDir: env[settings.CLAUDE_MANAGED_DIR_ENV] || undefined,
            });
          },
        });
        // Logs are written synchronously, so nothing is lost; exit even if an adapter left a handle open.
        process.exit(code);
      },
    );
}
