// A real daemon on a real socket, run inside the test process so a test can hand an adapter a
// fake backend client (1Password's SDK talks only to 1Password's service). Shims and CLIs are
// still separate processes talking to it over the socket.
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { AdapterModule } from '../../src/adapter.js';
import { startDaemon as startLifecycle, type RunningDaemon } from '../../src/daemon/lifecycle.js';
import { createLogger } from '../../src/log.js';
import { sendRequest } from '../../src/protocol/client.js';
import type { Reply, Request } from '../../src/protocol/messages.js';
import { baseEnv, CLI, privateTempDir, run, SHIM, type RunResult } from './daemon.js';

export interface InProcessDaemon {
  dir: string;
  socket: string;
  configPath: string;
  env: NodeJS.ProcessEnv;
  daemon: RunningDaemon;
  log(): string;
  request(req: Request, timeoutMs?: number): Promise<Reply>;
  shim(args?: string, env?: NodeJS.ProcessEnv): Promise<RunResult>;
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<RunResult>;
  writeConfig(yaml: string): void;
  stop(): Promise<void>;
}

export async function startInProcessDaemon(options: {
  config: string;
  adapterModules: Partial<Record<string, AdapterModule>>;
  env?: NodeJS.ProcessEnv;
  logLevel?: string;
}): Promise<InProcessDaemon> {
  const dir = privateTempDir('kb-ip-');
  const env = baseEnv(dir, options.env);
  const socket = env.KEYBROKER_SOCKET!;
  const configPath = env.KEYBROKER_CONFIG!;
  const writeConfig = (yaml: string): void => {
    fs.writeFileSync(configPath, yaml, { mode: 0o600 });
  };
  writeConfig(options.config);
  let logText = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logText += chunk.toString();
      cb();
    },
  });
  const daemon = await startLifecycle({
    config: { path: configPath, from: '--config' },
    socket: { path: socket, from: '--socket' },
    env,
    log: createLogger({ level: options.logLevel ?? 'debug', destination: sink }),
    adapterModules: options.adapterModules,
  });
  return {
    dir,
    socket,
    configPath,
    env,
    daemon,
    log: () => logText,
    request: (req, timeoutMs = 10_000) => sendRequest(socket, req, { timeoutMs }),
    shim: (args = '', extra = {}) => run('/bin/sh', ['-c', `${SHIM} ${args}`], { env: { ...env, ...extra } }),
    cli: (args, extra = {}) => run(process.execPath, [CLI, ...args], { env: { ...env, ...extra } }),
    writeConfig,
    stop: async () => {
      await daemon.stop();
      fs.rmSync(path.join(dir), { recursive: true, force: true });
    },
  };
}
