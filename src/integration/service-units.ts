// Rendering the service templates (systemd/keybroker.{service,socket}, launchd/dev.keybroker.agent.plist)
// with this machine's absolute paths. Placeholders are {{NAME}}; a line whose placeholder has no
// value is left out (optional settings), and a placeholder nobody filled in is an error, not a
// literal "{{…}}" in a unit file.
import fs from 'node:fs';
import path from 'node:path';
import { BrokerError } from '../errors.js';
import { DAEMON_NODE_FLAGS } from '../client/daemon-node-flags.js';

export const SYSTEMD_SERVICE = 'keybroker.service';
export const SYSTEMD_SOCKET = 'keybroker.socket';
export const LAUNCHD_LABEL = 'dev.keybroker.agent';
export const LAUNCHD_PLIST = `${LAUNCHD_LABEL}.plist`;

export interface UnitInputs {
  /** Absolute path of the node binary (process.execPath). */
  node: string;
  /** Absolute path of dist/src/cli/main.js. */
  entry: string;
  /** PATH for the daemon and its exec: sources. */
  path: string[];
  /** KEYBROKER_CONFIG to set, when the config is not where the service would look by default. */
  config?: string | undefined;
  /** Directory the daemon may write (its config directory). */
  configDir: string;
  /** The daemon's state directory (audit trail and its salt), as the service sees it. */
  stateDir: string;
  /** macOS: where the agent's log goes. */
  logDir: string;
}

const PLACEHOLDER = /\{\{([A-Z_]+)\}\}/g;

/** Fill {{NAME}} placeholders. Values are inserted as given: escape them for the format first. */
export function renderTemplate(
  template: string,
  values: Readonly<Record<string, string | undefined>>,
  name: string,
): string {
  const out: string[] = [];
  for (const line of template.split('\n')) {
    let omit = false;
    const rendered = line.replace(PLACEHOLDER, (_, key: string) => {
      if (!Object.prototype.hasOwnProperty.call(values, key)) {
        throw new BrokerError('INTERNAL', `${name}: no value for placeholder {{${key}}}`);
      }
      const value = values[key];
      if (value === undefined) omit = true;
      return value ?? '';
    });
    if (!omit) out.push(rendered);
  }
  return out.join('\n');
}

/** A path that can go into a unit file: absolute and free of control characters. */
function checkPath(p: string, what: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what we refuse
  if (!path.isAbsolute(p) || /[\u0000-\u001f\u007f]/.test(p)) {
    throw new BrokerError(
      'USAGE',
      `${what} must be an absolute path without control characters (got ${JSON.stringify(p)})`,
    );
  }
  return p;
}

/**
 * One word of a systemd command line or setting: `%` is a specifier and `$` a variable there, so
 * both are doubled; a word with spaces or quotes is double-quoted with C escapes.
 */
export function systemdWord(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** An Environment= assignment: quoted as a whole, `%` doubled (no `$` expansion happens there). */
function systemdEnvironment(name: string, value: string): string {
  const escaped = `${name}=${value}`.replace(/%/g, '%%');
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function xmlEscape(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

export interface SystemdUnits {
  service: string;
  socket: string;
}

export function renderSystemdUnits(inputs: UnitInputs, templatesDir: string): SystemdUnits {
  const node = checkPath(inputs.node, 'the node binary');
  const entry = checkPath(inputs.entry, "keybroker's entry file");
  const configDir = checkPath(inputs.configDir, 'the config directory');
  const pathValue = inputs.path.map((d) => checkPath(d, 'a PATH entry')).join(':');
  const service = renderTemplate(
    readTemplate(templatesDir, SYSTEMD_SERVICE),
    {
      // --telemetry-env: a service's environment is the administrator's (a drop-in), not a
      // Claude Code session's, so it may name the OTLP collector (docs/telemetry.md).
      EXEC_START: [node, ...DAEMON_NODE_FLAGS, entry, 'daemon', '--telemetry-env'].map(systemdWord).join(' '),
      PATH_ENVIRONMENT: systemdEnvironment('PATH', pathValue),
      CONFIG_ENVIRONMENT:
        inputs.config === undefined
          ? undefined
          : systemdEnvironment('KEYBROKER_CONFIG', checkPath(inputs.config, 'the config file')),
      CONFIG_DIR: systemdWord(configDir),
      STATE_DIR: systemdWord(`-${checkPath(inputs.stateDir, 'the state directory')}`),
    },
    SYSTEMD_SERVICE,
  );
  const socket = renderTemplate(readTemplate(templatesDir, SYSTEMD_SOCKET), {}, SYSTEMD_SOCKET);
  return { service, socket };
}

export function renderLaunchdPlist(inputs: UnitInputs, templatesDir: string): string {
  return renderTemplate(
    readTemplate(templatesDir, LAUNCHD_PLIST),
    {
      NODE: xmlEscape(checkPath(inputs.node, 'the node binary')),
      ENTRY: xmlEscape(checkPath(inputs.entry, "keybroker's entry file")),
      PATH: xmlEscape(inputs.path.map((d) => checkPath(d, 'a PATH entry')).join(':')),
      CONFIG: inputs.config === undefined ? undefined : xmlEscape(checkPath(inputs.config, 'the config file')),
      LOG_DIR: xmlEscape(checkPath(inputs.logDir, 'the log directory')),
    },
    LAUNCHD_PLIST,
  );
}

/**
 * The PATH a service gets: node's own directory first (exec: sources that are node scripts), then
 * where package managers put CLIs such as op, aws and vault. Not the installing shell's PATH, which
 * may hold a virtualenv or a directory that is gone tomorrow.
 */
export function servicePath(platform: NodeJS.Platform, node: string, home: string): string[] {
  const dirs =
    platform === 'darwin'
      ? [
          path.dirname(node),
          '/opt/homebrew/bin',
          '/opt/homebrew/sbin',
          '/usr/local/bin',
          '/usr/bin',
          '/bin',
          '/usr/sbin',
          '/sbin',
        ]
      : [
          path.dirname(node),
          path.join(home, '.local', 'bin'),
          '/usr/local/sbin',
          '/usr/local/bin',
          '/usr/sbin',
          '/usr/bin',
          '/sbin',
          '/bin',
        ];
  return [...new Set(dirs)];
}

function readTemplate(dir: string, name: string): string {
  const file = path.join(dir, name);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new BrokerError(
      'INTERNAL',
      `cannot read the template ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); is the install complete?`,
    );
  }
}
