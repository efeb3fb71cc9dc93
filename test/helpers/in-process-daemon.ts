// A real daemon on a real socket, run inside the test process so a test can hand an adapter a
// fake backend client (1Password's SDK talks only to 1Password's service). Shims and CLIs are
// still separate processes talking to it over the socket. Stopped, and its directory removed, when
// the test (or file) that started it is done (cleanup.ts).
import type { AdapterModule } from '../../src/adapter.js';
import { startDaemon as startLifecycle, type RunningDaemon } from '../../src/daemon/lifecycle.js';
import { capturedLog } from './captured-log.js';
import { cleanUp } from './cleanup.js';
import { workspace, type DaemonWorkspace } from './daemon.js';

export interface InProcessDaemon extends Omit<DaemonWorkspace, 'start'> {
  daemon: RunningDaemon;
  log(): string;
  stop(): Promise<void>;
}

export async function startInProcessDaemon(options: {
  config: string;
  adapterModules: Partial<Record<string, AdapterModule>>;
  env?: NodeJS.ProcessEnv;
  logLevel?: string;
}): Promise<InProcessDaemon> {
  const { start: _start, ...place } = workspace({ prefix: 'kb-ip-', config: options.config, env: options.env });
  const captured = capturedLog(options.logLevel);
  const daemon = await startLifecycle({
    config: { path: place.configPath, from: '--config' },
    socket: { path: place.socket, from: '--socket' },
    env: place.env,
    log: captured.log,
    adapterModules: options.adapterModules,
  });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= daemon.stop());
  cleanUp(stop);
  return { ...place, daemon, log: captured.text, stop };
}
