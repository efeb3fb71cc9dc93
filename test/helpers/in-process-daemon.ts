// A real daemon on a real socket, run inside the test process so a test can hand an adapter a
// fake backend client (1Password's SDK talks only to 1Password's service). Shims and CLIs are
// still separate processes talking to it over the socket.
import fs from 'node:fs';
import { Writable } from 'node:stream';
import type { AdapterModule } from '../../src/adapter.js';
import { startDaemon as startLifecycle, type RunningDaemon } from '../../src/daemon/lifecycle.js';
import { createLogger } from '../../src/log.js';
import { daemonWorkspace, privateTempDir, type DaemonWorkspace } from './daemon.js';

export interface InProcessDaemon extends DaemonWorkspace {
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
  const dir = privateTempDir('kb-ip-');
  const workspace = daemonWorkspace(dir, options.config, options.env);
  let logText = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  });
  const daemon = await startLifecycle({
    config: { path: workspace.configPath, from: '--config' },
    socket: { path: workspace.socket, from: '--socket' },
    env: workspace.env,
    log: createLogger({ level: options.logLevel ?? 'debug', destination: sink }),
    adapterModules: options.adapterModules,
  });
  return {
    ...workspace,
    daemon,
    log: () => logText,
    stop: async () => {
      await daemon.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
