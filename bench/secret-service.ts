// A real Secret Service for the keychain tests and the bench: a private D-Bus session bus (dbus-daemon with a config of its
// own: nothing is D-Bus-activated on it) and gnome-keyring-daemon on it, given a fresh HOME so it
// creates a new login keyring, unlocked with a password fed on stdin. Everything is torn down by
// stop(). Needs Debian's dbus, gnome-keyring, libsecret-tools (secret-tool) and libglib2.0-bin
// (gdbus), which .ci/run installs; elsewhere secretServiceMissing() says why it cannot start.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a program to completion (killed after 20 s), `input` on its stdin. */
export function runCommand(
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; input?: string },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

const PROGRAMS = ['dbus-daemon', 'gnome-keyring-daemon', 'secret-tool', 'gdbus'];

function missingPrograms(): string[] {
  return PROGRAMS.filter((p) => spawnSync('sh', ['-c', `command -v ${p}`]).status !== 0);
}

/** Why a Secret Service cannot be started here, or undefined when it can. */
export function secretServiceMissing(): string | undefined {
  const missing = missingPrograms();
  return missing.length > 0
    ? `no ${missing.join(', ')} on PATH (Debian: apt-get install dbus gnome-keyring libsecret-tools libglib2.0-bin)`
    : undefined;
}

export const KEYRING_PASSWORD = 'kb-test-keyring-password';

export interface SecretService {
  /** The bus address: give it to every process that should see this Secret Service. */
  address: string;
  /** DBUS_SESSION_BUS_ADDRESS for a daemon, shim or CLI under test. */
  env: NodeJS.ProcessEnv;
  /** gnome-keyring-daemon's own home, where its login.keyring lives. */
  keyringHome: string;
  /** Run secret-tool against this Secret Service. */
  secretTool(args: string[], input?: string): Promise<CommandResult>;
  /** Lock the login collection (the Secret Service's Lock method). */
  lock(): Promise<void>;
  /** Stop gnome-keyring-daemon and the bus, and wait for both to exit. */
  stop(): Promise<void>;
}

function busConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;
}

/** Start a session bus with nothing on it; resolves once it printed its address (its handshake). */
export async function startBus(dir: string): Promise<{ address: string; proc: ChildProcess }> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const config = path.join(dir, 'bus.conf');
  fs.writeFileSync(config, busConfig(path.join(dir, 'bus')));
  const proc = track(
    spawn('dbus-daemon', [`--config-file=${config}`, '--nofork', '--print-address=1'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    }),
  );
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('dbus-daemon did not print its address within 10 s')), 10_000);
    proc.on('error', reject);
    proc.on('exit', (code) => reject(new Error(`dbus-daemon exited with ${code}`)));
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl).trim());
      }
    });
  });
  return { address, proc };
}

/** Every bus and keyring daemon started here: killed when this process exits, whatever way it does. */
const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const proc of started) proc.kill('SIGTERM');
});

function track(proc: ChildProcess): ChildProcess {
  started.add(proc);
  proc.once('exit', () => started.delete(proc));
  return proc;
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

export async function startSecretService(dir: string): Promise<SecretService> {
  const bus = await startBus(path.join(dir, 'dbus'));
  const keyringHome = path.join(dir, 'keyring-home');
  const runtime = path.join(dir, 'keyring-run');
  fs.mkdirSync(keyringHome, { recursive: true, mode: 0o700 });
  fs.mkdirSync(runtime, { recursive: true, mode: 0o700 });
  const env: NodeJS.ProcessEnv = { DBUS_SESSION_BUS_ADDRESS: bus.address };
  const keyringEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: keyringHome,
    XDG_DATA_HOME: path.join(keyringHome, '.local', 'share'),
    XDG_CONFIG_HOME: path.join(keyringHome, '.config'),
    XDG_RUNTIME_DIR: runtime,
    DBUS_SESSION_BUS_ADDRESS: bus.address,
  };
  const keyring = track(
    spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], {
      env: keyringEnv,
      stdio: ['pipe', 'ignore', 'ignore'],
    }),
  );
  keyring.stdin!.end(KEYRING_PASSWORD);
  const clientEnv = { ...keyringEnv };
  const stop = async (): Promise<void> => {
    keyring.kill('SIGTERM');
    await exited(keyring);
    bus.proc.kill('SIGTERM');
    await exited(bus.proc);
  };
  // gdbus wait returns once the name has an owner: gnome-keyring registers it after unlocking.
  const ready = await runCommand('gdbus', ['wait', '--session', '--timeout', '10', 'org.freedesktop.secrets'], {
    env: clientEnv,
  });
  if (ready.code !== 0) {
    await stop();
    throw new Error(`gnome-keyring-daemon did not come up on the test bus: ${ready.stderr}`);
  }
  return {
    address: bus.address,
    env,
    keyringHome,
    secretTool: (args, input) =>
      runCommand('secret-tool', args, { env: clientEnv, ...(input !== undefined && { input }) }),
    lock: async () => {
      const locked = await runCommand(
        'gdbus',
        [
          'call',
          '--session',
          '--dest',
          'org.freedesktop.secrets',
          '--object-path',
          '/org/freedesktop/secrets',
          '--method',
          'org.freedesktop.Secret.Service.Lock',
          "['/org/freedesktop/secrets/collection/login']",
        ],
        { env: clientEnv },
      );
      if (locked.code !== 0) throw new Error(`could not lock the login keyring: ${locked.stderr}`);
    },
    stop,
  };
}
