// `keybroker doctor`: which credential Claude Code will really use, and every way the keybroker
// wiring can be quietly broken (for Codex too: codex-doctor.ts). One line per check (ok / warn / fail, with the fix). Everything it
// reads about the machine comes in through DoctorOptions (environment, home, project directory,
// platform, managed-settings directory), so tests run it over synthetic environments and files.
//
// It never prints a value: environment variables and settings are named, not shown; a foreign
// helper command is shown by its program name; fetched keys are only measured and dropped.
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { adapterFor } from '../../adapters/registry.js';
import { AdapterPool } from '../adapter-pool.js';
import { formatDuration } from '../duration.js';
import { REFRESH_AT } from '../config/schema.js';
import { chooseProfile, describeChoice, realDirectory, type ChosenProfile } from '../config/directories.js';
import { ConfigError, formatProblems, loadConfig, resolveConfigPath, type LoadedConfig } from '../config/load.js';
import { resolveManagedConfigPath } from '../config/managed.js';
import { BrokerError } from '../errors.js';
import { createLogger } from '../log.js';
import { sendRequest } from '../client/client.js';
import { describeBuild, isOtherBuild, restartCommand } from '../client/build-info.js';
import { formatMode } from '../client/file-mode.js';
import { CLIENT_REPLY_TIMEOUT_MS, type ProfileStatus, type StatusReply, type WireError } from '../protocol/messages.js';
import { checkSocketPath } from '../client/socket-check.js';
import { collapseHome, resolveSocketPath } from '../client/socket-path.js';
import {
  chooseCredential,
  claudeView,
  CLOUD_FLAGS,
  isEnvTruthy,
  type ClaudeView,
  type CredentialChoice,
} from './claude-credentials.js';
import { readAllSettings, type ClaudeContext } from './claude-settings.js';
import { unmarkedNote } from './unmarked-consumers.js';
import { rejectionNote } from './rejected-key.js';
import { CLAUDE_DEFAULT_HELPER_TTL_MS, HELPER_TTL_ENV } from './claude-setup.js';
import { codexChecks } from './codex-doctor.js';
import { summarizeConfig, summaryOf, type ProfileSummary } from './config-summary.js';
import { parseKeybrokerHelper, describeHelper, HELPER_SETTING, programWord, splitCommand } from './helper-command.js';
import { hardeningCheck } from './hardening-check.js';
import type { InstallLayout } from './install-layout.js';
import { keyLocations } from './key-locations.js';
import { nativeShimCheck, nativeShimState } from './native-shim.js';
import { sandboxChecks } from './sandbox-checks.js';
import { findSettingLines } from './shell-profiles.js';
import { isExecutable, shimFileCheck } from './shim-file.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  id: string;
  status: CheckStatus;
  message: string;
  fix?: string;
}

export interface DoctorOptions extends ClaudeContext {
  uid: number | undefined;
  /** This CLI's version and build id, to spot a daemon left running from an older install. */
  version: string;
  build?: string | undefined;
  /** --config / --socket given to doctor itself. */
  configFlag?: string | undefined;
  socketFlag?: string | undefined;
  /** Ask the daemon for each profile (may reach the backends, and 1Password may prompt). */
  fetchProfiles: boolean;
  requestTimeoutMs?: number;
  /** This installation, for the native-shim and hardening checks (tests over synthetic settings leave it out). */
  install?: InstallLayout | undefined;
  /** Each check as soon as it is made, in the order of the result (the CLI prints them as they come). */
  onCheck?: (check: DoctorCheck) => void;
  /**
   * Doctor is about to wait on something that may be slow (the daemon, a profile's source): what,
   * for a person. Returns the function to call when the wait is over.
   */
  onWait?: (what: string) => () => void;
}

/** 1Password service accounts: reads per hour per token (Teams/Families; Business has 10,000). */
export const OP_SMALLEST_HOURLY_BUDGET = 1_000;

export async function runDoctor(options: DoctorOptions): Promise<DoctorCheck[]> {
  const checks = reportingList(options.onCheck);
  const files = await readAllSettings(options);
  const view = claudeView(files, options.env);
  // The shim runs in Claude Code's environment: the shell's plus the settings' env blocks.
  const claudeEnv = Object.fromEntries([...view.env].map(([k, e]) => [k, e.value]));

  for (const f of files) {
    if (f.shadowedBy) {
      checks.push({
        id: 'settings',
        status: 'warn',
        message: `${collapseHome(f.path, options.home)} is not used: Claude Code takes its managed settings from ${collapseHome(f.shadowedBy, options.home)} first, which doctor cannot read, so what it says about managed settings may be incomplete`,
        fix: `check apiKeyHelper and env in ${f.shadowedBy}`,
      });
    } else if (f.error)
      checks.push({
        id: 'settings',
        status: 'fail',
        message: `${collapseHome(f.path, options.home)} ${f.error}; Claude Code cannot use it`,
        fix: 'correct the file by hand',
      });
  }
  const choice = chooseCredential(view);
  checks.push(credentialCheck(choice, view, options.home));
  const shadow = await shadowingCheck(view, options);
  if (shadow) checks.push(shadow);
  checks.push(...cloudProviderChecks(view, options, await cloudCredentialFiles(options, view)));
  const scope = helperScopeCheck(view, options.home);
  if (scope) checks.push(scope);
  checks.push(...(await shimChecks(view, claudeEnv, options.home)));
  if (options.install) {
    const state = await nativeShimState(options.install, options.env);
    checks.push(nativeShimCheck(state, options.platform, collapseHome(options.install.nativeShim, options.home)));
  }

  const configPath = resolveConfigPath({ flag: options.configFlag, env: options.env, home: options.home });
  const config = await configChecks(configPath.path, view, options);
  // The config is read and parsed once; only one that fails to load in full is read again, offline,
  // for the TTLs and source kinds the later checks still need.
  const summary = config.loaded ? summaryOf(config.loaded) : await summarizeConfig(configPath.path);
  checks.push(...config.checks);
  const here = await directoryCheck(view, config.loaded, options);
  if (here) checks.push(here.check);
  const helperTtl = helperTtlCheck(view, summary.ok ? summary.profiles : undefined, here?.choice.profile);
  if (helperTtl) checks.push(helperTtl);
  checks.push(...(await codexChecks({ ...options, profiles: summary.ok ? summary.profiles : undefined })));

  const socket = resolveSocketPath({
    flag: options.socketFlag,
    env: claudeEnv,
    platform: options.platform,
    home: options.home,
  });
  checks.push(await socketCheck(socket.path, socket.from, options));
  const locations = await keyLocations({ ...options, loaded: config.loaded, socket: socket.path });
  checks.push(...(await sandboxChecks({ ...options, files, locations, claudeEnv })));
  const daemon = await daemonChecks(socket.path, claudeEnv, configPath.path, options, checks);
  const hardening = hardeningCheck({
    platform: options.platform,
    home: options.home,
    addonFile: options.install?.hardeningAddon,
    build: options.install && (await nativeShimState(options.install, options.env)),
    daemon: daemon.status?.daemon,
  });
  if (hardening) checks.push(hardening);
  const budget = onePasswordCheck(summary.ok ? summary.profiles : [], daemon.status);
  if (budget) checks.push(budget);
  return [...checks];
}

/** A list of checks that reports each one as it is added, so a slow check does not hold up the rest. */
function reportingList(
  onCheck: ((check: DoctorCheck) => void) | undefined,
): { push(...c: DoctorCheck[]): void } & Iterable<DoctorCheck> {
  const list: DoctorCheck[] = [];
  return {
    push: (...added: DoctorCheck[]): void => {
      for (const c of added) {
        list.push(c);
        onCheck?.(c);
      }
    },
    [Symbol.iterator]: () => list[Symbol.iterator](),
  };
}

type CheckList = ReturnType<typeof reportingList>;

/** Run `wait`, telling options.onWait what it waits for. */
async function waitingOn<T>(options: DoctorOptions, what: string, wait: () => Promise<T>): Promise<T> {
  const done = options.onWait?.(what);
  try {
    return await wait();
  } finally {
    done?.();
  }
}

// ---- which credential, and what shadows the helper ----

function credentialCheck(choice: CredentialChoice, view: ClaudeView, home: string): DoctorCheck {
  const where =
    choice.from === undefined
      ? ''
      : ` (${choice.from === 'environment' ? 'from the environment' : `from ${collapseHome(choice.from, home)}`})`;
  const message = `Claude Code will use ${choice.label}${where}`;
  const helper = view.settings.get('apiKeyHelper');
  if (choice.kind === 'api-key-helper') {
    const ours = parseKeybrokerHelper(String(helper!.value));
    return ours
      ? {
          id: 'credential',
          status: 'ok',
          message: `${message}: keybroker ${ours.profile === undefined ? 'with the profile of the project directory' : `profile "${ours.profile}"`}`,
        }
      : {
          id: 'credential',
          status: 'warn',
          message: `${message}, which runs ${describeHelper(String(helper!.value))}, not keybroker-shim`,
          fix: 'keybroker setup claude --force',
        };
  }
  if (choice.kind === 'bedrock' || choice.kind === 'vertex' || choice.kind === 'foundry')
    return { id: 'credential', status: 'ok', message };
  if (!helper)
    return {
      id: 'credential',
      status: 'warn',
      message: `${message}; no apiKeyHelper is set`,
      fix: 'keybroker setup claude',
    };
  // A helper is set but something above it wins: the shadowing check says what and where.
  return { id: 'credential', status: 'fail', message: `${message}, not apiKeyHelper` };
}

async function shadowingCheck(view: ClaudeView, options: DoctorOptions): Promise<DoctorCheck | undefined> {
  if (!view.settings.get('apiKeyHelper')) return undefined;
  const names = ['ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_API_KEY'].filter((n) => (view.env.get(n)?.value ?? '') !== '');
  if (names.length === 0)
    return {
      id: 'shadowing',
      status: 'ok',
      message:
        'neither ANTHROPIC_AUTH_TOKEN nor ANTHROPIC_API_KEY is set, so nothing takes precedence over apiKeyHelper',
    };
  const lines = await findSettingLines(names, options.home, options.env);
  const parts: string[] = [];
  const fixes: string[] = [];
  for (const name of names) {
    const entry = view.env.get(name)!;
    if (entry.scope !== 'environment') {
      parts.push(`${name} is set in the env block of ${collapseHome(entry.from, options.home)}`);
      fixes.push(`remove ${name} from the env block of ${collapseHome(entry.from, options.home)}`);
      continue;
    }
    const found = lines.get(name) ?? [];
    if (found.length > 0) {
      const at = found.map((l) => `${collapseHome(l.file, options.home)}:${l.line}`).join(', ');
      parts.push(`${name} is exported (${at})`);
      fixes.push(`delete ${name} at ${at}, open a new shell (or run: unset ${name})`);
    } else {
      parts.push(
        `${name} is set in the environment (not by a shell startup file: check your terminal, IDE or ~/.config/environment.d)`,
      );
      fixes.push(`unset ${name} where it is set`);
    }
  }
  return {
    id: 'shadowing',
    status: 'fail',
    message: `${parts.join('; ')}: Claude Code uses it before apiKeyHelper`,
    fix: fixes.join('; '),
  };
}

// ---- cloud providers ----

interface CloudFiles {
  awsFiles: boolean;
  gcloudAdc: boolean;
  googleCredentialsFile: boolean;
  azureLogin: boolean;
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

async function cloudCredentialFiles(options: DoctorOptions, view: ClaudeView): Promise<CloudFiles> {
  const env = (name: string): string | undefined => view.env.get(name)?.value || undefined;
  const h = options.home;
  const gcloud = env('CLOUDSDK_CONFIG') ?? path.join(h, '.config', 'gcloud');
  return {
    awsFiles:
      (await exists(env('AWS_SHARED_CREDENTIALS_FILE') ?? path.join(h, '.aws', 'credentials'))) ||
      (await exists(env('AWS_CONFIG_FILE') ?? path.join(h, '.aws', 'config'))),
    gcloudAdc: await exists(path.join(gcloud, 'application_default_credentials.json')),
    googleCredentialsFile:
      env('GOOGLE_APPLICATION_CREDENTIALS') !== undefined && (await exists(env('GOOGLE_APPLICATION_CREDENTIALS')!)),
    azureLogin: await exists(path.join(env('AZURE_CONFIG_DIR') ?? path.join(h, '.azure'), 'azureProfile.json')),
  };
}

function cloudProviderChecks(view: ClaudeView, options: DoctorOptions, files: CloudFiles): DoctorCheck[] {
  const set = (name: string): boolean => (view.env.get(name)?.value ?? '') !== '';
  const active = CLOUD_FLAGS.filter((c) => isEnvTruthy(view.env.get(c.flag)?.value));
  const checks: DoctorCheck[] = [];
  const hasHelper = view.settings.get('apiKeyHelper') !== undefined;
  for (const [i, c] of active.entries()) {
    const from = view.env.get(c.flag)!.from;
    const origin = from === 'environment' ? 'in the environment' : `in ${collapseHome(from, options.home)}`;
    if (i > 0) {
      checks.push({
        id: 'cloud-provider',
        status: 'warn',
        message: `${c.flag} is also set (${origin}) but ${active[0]!.flag} wins`,
        fix: `unset ${c.flag}`,
      });
      continue;
    }
    const missing: string[] = [];
    let credentials: string | undefined;
    if (c.kind === 'bedrock') {
      if (!set('AWS_REGION'))
        missing.push('AWS_REGION (required: Claude Code does not read the region from ~/.aws/config)');
      const exportHelper = view.settings.get('awsCredentialExport');
      credentials = isEnvTruthy(view.env.get('CLAUDE_CODE_SKIP_BEDROCK_AUTH')?.value)
        ? 'none needed (CLAUDE_CODE_SKIP_BEDROCK_AUTH)'
        : set('AWS_BEARER_TOKEN_BEDROCK')
          ? 'a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK)'
          : exportHelper && typeof exportHelper.value === 'string'
            ? `awsCredentialExport (${parseKeybrokerHelper(exportHelper.value) ? 'keybroker' : describeHelper(exportHelper.value)})`
            : set('AWS_ACCESS_KEY_ID') && set('AWS_SECRET_ACCESS_KEY')
              ? 'AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY'
              : set('AWS_PROFILE')
                ? 'AWS_PROFILE'
                : view.settings.get('awsAuthRefresh')
                  ? 'awsAuthRefresh'
                  : set('AWS_WEB_IDENTITY_TOKEN_FILE') ||
                      set('AWS_CONTAINER_CREDENTIALS_FULL_URI') ||
                      set('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI')
                    ? 'web identity or container credentials'
                    : files.awsFiles
                      ? '~/.aws/config or ~/.aws/credentials (the SDK chain)'
                      : undefined;
      if (!credentials)
        missing.push('AWS credentials (none in the environment, ~/.aws, awsCredentialExport or awsAuthRefresh)');
    } else if (c.kind === 'vertex') {
      if (!set('ANTHROPIC_VERTEX_PROJECT_ID')) missing.push('ANTHROPIC_VERTEX_PROJECT_ID');
      credentials = isEnvTruthy(view.env.get('CLAUDE_CODE_SKIP_VERTEX_AUTH')?.value)
        ? 'none needed (CLAUDE_CODE_SKIP_VERTEX_AUTH)'
        : files.googleCredentialsFile
          ? 'GOOGLE_APPLICATION_CREDENTIALS'
          : files.gcloudAdc
            ? 'gcloud application-default credentials'
            : undefined;
      if (!credentials)
        missing.push(
          'Google credentials (run: gcloud auth application-default login, or set GOOGLE_APPLICATION_CREDENTIALS to a key file)',
        );
    } else {
      if (!set('ANTHROPIC_FOUNDRY_RESOURCE') && !set('ANTHROPIC_FOUNDRY_BASE_URL'))
        missing.push('ANTHROPIC_FOUNDRY_RESOURCE or ANTHROPIC_FOUNDRY_BASE_URL');
      credentials = isEnvTruthy(view.env.get('CLAUDE_CODE_SKIP_FOUNDRY_AUTH')?.value)
        ? 'none needed (CLAUDE_CODE_SKIP_FOUNDRY_AUTH)'
        : set('ANTHROPIC_FOUNDRY_API_KEY')
          ? 'ANTHROPIC_FOUNDRY_API_KEY'
          : set('AZURE_CLIENT_ID') &&
              (set('AZURE_CLIENT_SECRET') || set('AZURE_CLIENT_CERTIFICATE_PATH') || set('AZURE_FEDERATED_TOKEN_FILE'))
            ? 'an Azure service principal (AZURE_CLIENT_ID …)'
            : files.azureLogin
              ? 'your Azure CLI login'
              : undefined;
      if (!credentials) missing.push('Azure credentials (ANTHROPIC_FOUNDRY_API_KEY, or run: az login)');
    }
    if (missing.length > 0) {
      checks.push({
        id: 'cloud-provider',
        status: 'fail',
        message: `${c.flag} is set (${origin}) but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing`,
        fix: `set ${missing.map((m) => m.split(' ')[0]).join(', ')} — or unset ${c.flag} to use apiKeyHelper`,
      });
    } else if (hasHelper) {
      checks.push({
        id: 'cloud-provider',
        status: 'warn',
        message: `${c.flag} is set (${origin}): Claude Code uses ${c.name} with ${credentials} and ignores apiKeyHelper`,
        fix: `unset ${c.flag} to use keybroker's API key`,
      });
    } else {
      checks.push({ id: 'cloud-provider', status: 'ok', message: `${c.name} with ${credentials}` });
    }
  }
  return checks;
}

// ---- the helper's scope, path and TTL ----

function helperScopeCheck(view: ClaudeView, home: string): DoctorCheck | undefined {
  if (view.helperFiles.length === 0) return undefined;
  const where = view.helperFiles.map((f) => collapseHome(f.path, home)).join(', ');
  if (view.helperFiles.some((f) => f.scope === 'user' || f.scope === 'managed')) {
    return { id: 'helper-scope', status: 'ok', message: `apiKeyHelper is set in ${where}` };
  }
  return {
    id: 'helper-scope',
    status: 'warn',
    message: `apiKeyHelper is set only in project settings (${where}): interactive sessions run it only after the workspace trust dialog, other directories do not see it, and claude --bare ignores it`,
    fix: 'keybroker setup claude (writes it to your user settings)',
  };
}

async function shimChecks(view: ClaudeView, claudeEnv: NodeJS.ProcessEnv, home: string): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  for (const key of Object.values(HELPER_SETTING)) {
    const entry = view.settings.get(key);
    if (!entry || typeof entry.value !== 'string') continue;
    const ours = parseKeybrokerHelper(entry.value);
    if (!ours) continue;
    const ran = await shimFileCheck(ours.shim, ours.interpreter, {
      id: `shim:${key}`,
      who: key,
      program: 'Claude Code',
      setup: 'keybroker setup claude',
      env: claudeEnv,
      home,
    });
    if ('check' in ran) {
      checks.push(ran.check);
      continue;
    }
    const { shim, native } = ran;
    const which = native ? 'the native keybroker-shim' : 'the Node keybroker-shim';
    const nativeBeside = path.join(path.dirname(shim), '..', '..', 'native', 'keybroker-shim');
    const hint =
      !native && key === HELPER_SETTING['api-key'] && (await isExecutable(nativeBeside))
        ? `; the native shim beside it answers in about a millisecond instead of Node's start-up: keybroker setup claude --force writes it`
        : '';
    const serving = ours.profile === undefined ? 'the profile of its working directory' : `profile "${ours.profile}"`;
    checks.push({
      id: `shim:${key}`,
      status: 'ok',
      message: `${key} runs ${which} (${collapseHome(shim, home)}) for ${serving}${ours.format !== 'raw' ? ` as ${ours.format}` : ''}${hint}`,
    });
  }
  return checks;
}

// ---- keybroker's own config, socket and daemon ----

function helperTtlCheck(
  view: ClaudeView,
  profiles: ProfileSummary[] | undefined,
  profileHere: string | undefined,
): DoctorCheck | undefined {
  const helper = view.settings.get('apiKeyHelper');
  const ours = helper && typeof helper.value === 'string' ? parseKeybrokerHelper(helper.value) : undefined;
  if (!ours) return undefined;
  const raw = view.env.get(HELPER_TTL_ENV)?.value;
  const ttl = raw === undefined ? CLAUDE_DEFAULT_HELPER_TTL_MS : Number(raw);
  if (!Number.isInteger(ttl) || ttl <= 0) {
    return {
      id: 'helper-ttl',
      status: 'warn',
      message: `${HELPER_TTL_ENV} is not a positive number of milliseconds, so Claude Code ignores it`,
      fix: 'keybroker setup claude',
    };
  }
  const profile = profiles?.find((p) => p.name === (ours.profile ?? profileHere));
  const shown = `${formatDuration(ttl)}${raw === undefined ? ' (the default)' : ''}`;
  if (profile && ttl > profile.ttlMs) {
    return {
      id: 'helper-ttl',
      status: 'warn',
      message: `Claude Code re-runs the helper every ${shown}, longer than profile "${profile.name}"'s TTL of ${formatDuration(profile.ttlMs)}: a rotated key reaches it late`,
      fix: 'keybroker setup claude (sets CLAUDE_CODE_API_KEY_HELPER_TTL_MS to fit)',
    };
  }
  return {
    id: 'helper-ttl',
    status: 'ok',
    message: `Claude Code re-runs the helper every ${shown}${profile ? ` (profile TTL ${formatDuration(profile.ttlMs)})` : ''}`,
  };
}

// ---- which profile Claude Code gets here ----

/**
 * The profile a Claude Code session started in this directory gets, and why, by the daemon's own
 * rule: "~/code/acme/api → work (directories: ~/code/acme)".
 */
async function directoryCheck(
  view: ClaudeView,
  loaded: LoadedConfig | undefined,
  options: DoctorOptions,
): Promise<{ check: DoctorCheck; choice: ChosenProfile } | undefined> {
  const helper = view.settings.get('apiKeyHelper');
  const ours = helper && typeof helper.value === 'string' ? parseKeybrokerHelper(helper.value) : undefined;
  if (!ours || !loaded) return undefined;
  const choice = chooseProfile(loaded.directories, ours.profile, await realDirectory(options.cwd));
  const message = `${collapseHome(options.cwd, options.home)} → ${describeChoice(choice)}`;
  if (!loaded.profiles.has(choice.profile)) {
    // A named profile that is missing is the config check's failure already.
    if (choice.chosenBy === 'argument') return undefined;
    return {
      choice,
      check: {
        id: 'profile-here',
        status: 'fail',
        message: `${message}, which is not in ${collapseHome(loaded.file, options.home)}`,
        fix: `add a "default" profile, or a directories: entry for ${collapseHome(options.cwd, options.home)}`,
      },
    };
  }
  if (choice.chosenBy === 'argument' && loaded.directories.length > 0) {
    return {
      choice,
      check: {
        id: 'profile-here',
        status: 'warn',
        message: `${message}: the helper names a profile, so the directories: map is not used`,
        fix: 'keybroker setup claude --force (writes the helper without a profile argument)',
      },
    };
  }
  return { choice, check: { id: 'profile-here', status: 'ok', message } };
}

async function configChecks(
  file: string,
  view: ClaudeView,
  options: DoctorOptions,
): Promise<{ checks: DoctorCheck[]; loaded?: LoadedConfig }> {
  const managed = resolveManagedConfigPath({ env: options.env, platform: options.platform });
  const pool = new AdapterPool({ find: adapterFor, env: options.env, log: createLogger({ level: 'silent' }) });
  try {
    const loaded = await loadConfig(file, pool.acquire, options.home, { managed });
    const checks: DoctorCheck[] = [];
    const m = loaded.managed;
    if (m?.error) {
      checks.push({ id: 'managed-config', status: 'fail', message: m.error });
    } else if (m) {
      checks.push({
        id: 'managed-config',
        status: 'ok',
        message: `${m.file}: ${m.profiles.length} managed profile${m.profiles.length === 1 ? '' : 's'} (${m.profiles.join(', ') || 'none'})${m.locked.length ? `; locked: ${m.locked.join(', ')}` : ''}`,
      });
    }
    for (const w of loaded.warnings) {
      if (w.kind) continue; // a slow timeout: config check says so; doctor reports what is broken
      checks.push({
        id: 'managed-config',
        status: 'warn',
        message: `${collapseHome(w.file, options.home)}${w.line ? `:${w.line}` : ''}: ${w.path}: ${w.message}`,
        fix: `remove ${w.path} from ${collapseHome(w.file, options.home)}`,
      });
    }
    checks.push(configCheck(file, loaded, view, options));
    return { checks, loaded };
  } catch (err) {
    return { checks: configErrorChecks(file, err, options) };
  } finally {
    await pool.closeAll();
  }
}

function configCheck(file: string, loaded: LoadedConfig, view: ClaudeView, options: DoctorOptions): DoctorCheck {
  const names = [...loaded.profiles.values()].map((p) => (p.managedBy ? `${p.name} (managed)` : p.name));
  const wanted = Object.values(HELPER_SETTING)
    .map((key) => view.settings.get(key))
    .map((e) => (e && typeof e.value === 'string' ? parseKeybrokerHelper(e.value)?.profile : undefined))
    .filter((p): p is string => p !== undefined);
  const unknown = [...new Set(wanted.filter((p) => !loaded.profiles.has(p)))];
  if (unknown.length > 0) {
    return {
      id: 'config',
      status: 'fail',
      message: `${collapseHome(file, options.home)} has no profile ${unknown.map((u) => `"${u}"`).join(', ')}, which Claude Code's helper asks for (profiles: ${names.join(', ') || 'none'})`,
      fix: 'add the profile, or: keybroker setup claude --force --profile NAME',
    };
  }
  const dirs =
    loaded.directories.length > 0
      ? `, ${loaded.directories.length} director${loaded.directories.length === 1 ? 'y' : 'ies'} mapped`
      : '';
  return {
    id: 'config',
    status: 'ok',
    message: `${collapseHome(file, options.home)}: ${names.length} profile${names.length === 1 ? '' : 's'} (${names.join(', ')})${dirs}`,
  };
}

/**
 * The config (the user's, or the managed one: the error names its file) did not load: one check
 * per problem, so each is on its own line, and the fix once, under the last.
 */
function configErrorChecks(file: string, err: unknown, options: DoctorOptions): DoctorCheck[] {
  const fix = 'keybroker config check';
  if (err instanceof ConfigError && err.problems.length > 0) {
    const shown = collapseHome(err.file, options.home);
    return err.problems.map((p, i) => ({
      id: 'config',
      status: 'fail' as const,
      message: formatProblems(shown, [p]),
      ...(i === err.problems.length - 1 && { fix }),
    }));
  }
  return [
    {
      id: 'config',
      status: 'fail',
      message: `${collapseHome(file, options.home)}: ${err instanceof BrokerError ? err.message : 'cannot load it'}`,
      fix,
    },
  ];
}

/** The first line of a report, and how many more there are. */
function firstOf(report: string): string {
  const [first, ...more] = report.split('\n');
  return more.length > 0 ? `${first} (and ${more.length} more: keybroker config check)` : first!;
}

async function socketCheck(socket: string, from: string, options: DoctorOptions): Promise<DoctorCheck> {
  const chosen = from === 'default' ? '' : ` (chosen by ${from})`;
  // The same check every client makes before connecting.
  const problem = checkSocketPath(socket, options.uid);
  if (problem?.kind === 'UNSAFE_PATH') {
    return {
      id: 'socket',
      status: 'fail',
      message: `${problem.what}: the shim and CLI refuse it, and the daemon will not start there`,
      fix: problem.fix,
    };
  }
  if (problem) {
    return fsSync.existsSync(path.dirname(socket))
      ? {
          id: 'socket',
          status: 'ok',
          message: `${collapseHome(socket, options.home)}${chosen}: directory private (0700); no socket yet`,
        }
      : {
          id: 'socket',
          status: 'ok',
          message: `${collapseHome(socket, options.home)}${chosen}: its directory does not exist yet (the daemon creates it, mode 0700)`,
        };
  }
  const sock = await fs.lstat(socket);
  if ((sock.mode & 0o077) !== 0)
    return {
      id: 'socket',
      status: 'warn',
      message: `${collapseHome(socket, options.home)} has mode ${formatMode(sock.mode)} (its directory is private, so only you can reach it)`,
      fix: `chmod 600 ${socket}`,
    };
  return {
    id: 'socket',
    status: 'ok',
    message: `${collapseHome(socket, options.home)}${chosen}: directory 0700, socket ${formatMode(sock.mode)}`,
  };
}

interface DaemonResult {
  status: StatusReply | undefined;
}

async function daemonChecks(
  socket: string,
  claudeEnv: NodeJS.ProcessEnv,
  configFile: string,
  options: DoctorOptions,
  checks: CheckList,
): Promise<DaemonResult> {
  const timeoutMs = options.requestTimeoutMs ?? 5_000;
  const reply = await waitingOn(options, `the daemon at ${collapseHome(socket, options.home)}`, () =>
    sendRequest(socket, { v: 1, op: 'status' }, { timeoutMs }),
  );
  if (!reply.ok && reply.error.code === 'SANDBOXED') {
    // Run by the agent inside Claude Code's sandbox: what it cannot reach is the point.
    checks.push({ id: 'daemon', status: 'warn', message: reply.error.message });
    return { status: undefined };
  }
  if (!reply.ok) {
    const autostart = claudeEnv.KEYBROKER_NO_AUTOSTART !== '1';
    checks.push(
      autostart
        ? {
            id: 'daemon',
            status: 'warn',
            message: `${reply.error.message}; keybroker-shim starts one on first use, which makes that first call slower`,
            fix: 'keybroker service install (or run: keybroker daemon)',
          }
        : {
            id: 'daemon',
            status: 'fail',
            message: `${reply.error.message}, and autostart is off (KEYBROKER_NO_AUTOSTART=1)`,
            fix: 'keybroker service install (or run: keybroker daemon)',
          },
    );
    return { status: undefined };
  }
  const status = reply as StatusReply;
  const d = status.daemon;
  if (d.lastReloadError) {
    checks.push({
      id: 'daemon',
      status: 'fail',
      message: `pid ${d.pid} answers but could not load its config: ${firstOf(d.lastReloadError)}`,
      fix: `fix ${d.config}, then: kill -HUP ${d.pid}`,
    });
  } else if (isOtherBuild({ version: options.version, build: options.build }, d)) {
    const mine = { version: options.version, build: options.build };
    checks.push({
      id: 'daemon',
      status: 'warn',
      message: `pid ${d.pid} runs keybroker ${describeBuild(d)}, this is ${describeBuild(mine)}`,
      fix: restartCommand(d.startedBy, options.uid),
    });
  } else {
    checks.push({
      id: 'daemon',
      status: 'ok',
      message: `pid ${d.pid}, keybroker ${d.version}, up ${formatDuration(d.uptimeMs)}`,
    });
  }
  if (d.envNames) checks.push(daemonEnvCheck(d.pid, d.envNames));
  if (path.resolve(d.config) !== path.resolve(configFile)) {
    checks.push({
      id: 'daemon-config',
      status: 'warn',
      message: `the daemon reads ${collapseHome(d.config, options.home)}, this shell's config is ${collapseHome(configFile, options.home)}`,
      fix: 'point both at the same file (KEYBROKER_CONFIG), or reinstall the service from this shell',
    });
  }
  for (const p of status.profiles) {
    const note = unmarkedNote(p);
    if (note)
      checks.push({
        id: `consumers:${p.name}`,
        status: 'warn',
        message: `profile "${p.name}": ${note}`,
        fix: "upgrade keybroker (a newer release may know this Claude Code's markers), or set repeatDetection: always on the profile",
      });
  }
  const now = Date.now();
  if (options.fetchProfiles) {
    for (const p of status.profiles) {
      const check = await waitingOn(options, `source ${sourceLabel(p)} (profile "${p.name}")`, () =>
        profileCheck(socket, p, CLIENT_REPLY_TIMEOUT_MS, now),
      );
      // Doctor's own read may have fetched a new value, which clears a rejection: ask again.
      const rejected = p.rejected ? rejectedCheck(await profileStatus(socket, p.name, timeoutMs), now) : undefined;
      checks.push(rejected ?? check);
    }
  } else {
    // No fetch now, but a fetch that already failed, or a key refused as rejected, is worth
    // saying (with its fix).
    for (const p of status.profiles) {
      const last = rejectedCheck(p, now) ?? lastErrorCheck(p, now);
      if (last) checks.push(last);
    }
  }
  return { status };
}

/** One profile's status as the daemon has it now (undefined when it does not answer or has no such profile). */
async function profileStatus(socket: string, name: string, timeoutMs: number): Promise<ProfileStatus | undefined> {
  const reply = await sendRequest(socket, { v: 1, op: 'status' }, { timeoutMs });
  return reply.ok ? (reply as StatusReply).profiles.find((p) => p.name === name) : undefined;
}

/** The daemon refused the profile's key as rejected, and no fetch has brought another value since. */
function rejectedCheck(p: ProfileStatus | undefined, now: number): DoctorCheck | undefined {
  const note = p && rejectionNote(p, now);
  if (!p || !note) return undefined;
  return { id: `profile:${p.name}`, status: 'fail', message: `${sourceLabel(p)}: ${note.message}`, fix: note.fix };
}

/**
 * A daemon keeps the environment of whoever started it, and its exec: sources inherit it. Names
 * only: values may be secrets.
 */
function daemonEnvCheck(pid: number, names: string[]): DoctorCheck {
  const session = names.filter(
    (n) =>
      n === 'NODE_OPTIONS' ||
      n === 'CLAUDECODE' ||
      n === 'AI_AGENT' ||
      n === 'CLAUDE_PID' ||
      n.startsWith('CLAUDE_CODE_'),
  );
  const all = `its sources see ${names.length} environment variable${names.length === 1 ? '' : 's'}: ${names.join(', ')}`;
  if (session.length > 0) {
    return {
      id: 'daemon-env',
      status: 'warn',
      message: `pid ${pid} was started with ${session.join(', ')} (from a Claude Code session or NODE_OPTIONS) and keeps them; ${all}`,
      fix: `restart it from a plain shell, or let keybroker-shim start a clean one: kill ${pid}`,
    };
  }
  return { id: 'daemon-env', status: 'ok', message: all };
}

/**
 * What to do about a profile's error: its own fix (else fixing the source), then a refresh, which
 * fetches at once and so clears what doctor reports.
 */
function profileFix(name: string, error: Pick<WireError, 'fix'> | undefined): string {
  return `${error?.fix ?? 'fix the source'}, then: keybroker refresh ${name}`;
}

/**
 * A profile's last fetch failed, from the daemon's status; `served` says how doctor's own read
 * went, when it made one.
 */
function lastErrorCheck(p: ProfileStatus, now: number, served?: string): DoctorCheck | undefined {
  if (!p.lastError) return undefined;
  const ago = formatDuration(Math.max(0, now - p.lastError.atMs));
  const source = sourceLabel(p);
  const serving =
    p.state === 'fresh' || p.state === 'stale'
      ? `still serving the value fetched ${p.ageMs === null ? 'earlier' : `${formatDuration(p.ageMs)} ago`}`
      : 'no value to serve';
  const failed = `the last fetch failed ${ago} ago (${serving}): ${p.lastError.code}: ${p.lastError.message}`;
  return {
    id: `profile:${p.name}`,
    status: 'warn',
    message: `${source}: ${served === undefined ? failed : `${served}, but ${failed}`}`,
    fix: profileFix(p.name, p.lastError),
  };
}

function sourceLabel(p: ProfileStatus): string {
  return p.managed ? `${p.source} (managed)` : p.source;
}

async function profileCheck(socket: string, p: ProfileStatus, timeoutMs: number, now: number): Promise<DoctorCheck> {
  const id = `profile:${p.name}`;
  const source = sourceLabel(p);
  const cached = p.state === 'fresh';
  const started = performance.now();
  const reply = await sendRequest(socket, { v: 1, op: 'get', profile: p.name }, { timeoutMs });
  const ms = Math.round(performance.now() - started);
  if (!reply.ok) {
    // The check names the profile already: the error's own profile field is not repeated.
    const { code, message } = reply.error;
    return { id, status: 'fail', message: `${source}: ${code}: ${message}`, fix: profileFix(p.name, reply.error) };
  }
  if (!('value' in reply)) return { id, status: 'fail', message: `${source}: the daemon answered without a value` };
  // The value itself is only inspected for shape, never kept or printed.
  let shape = '';
  if (p.kind === 'aws-credentials') {
    let good: boolean;
    try {
      const v = JSON.parse(reply.value) as Record<string, unknown>;
      good = typeof v.AccessKeyId === 'string' && typeof v.SecretAccessKey === 'string';
    } catch {
      good = false;
    }
    if (!good) return { id, status: 'fail', message: `${source}: the value is not AWS credentials JSON` };
    shape = ', AWS credentials';
  }
  const how = cached ? `served from cache in ${ms} ms` : `fetched in ${ms} ms`;
  if (reply.stale) {
    const message = reply.warning?.message ?? 'the source is failing';
    return {
      id,
      status: 'warn',
      message: `${source}: ${how}, but stale: ${message}`,
      fix: profileFix(p.name, reply.warning),
    };
  }
  // Served from cache while the last fetch (a refresh, a refresh-ahead) failed: the value works
  // now, and stops working when it expires unless the source is fixed.
  if (cached && p.lastError) return lastErrorCheck(p, now, how)!;
  return { id, status: 'ok', message: `${source}: ${how}${shape}, fresh for ${formatDuration(reply.expiresInMs)}` };
}

// ---- 1Password ----

function isOnePassword(p: ProfileSummary): 'sdk' | 'cli' | undefined {
  if (p.scheme === 'op') return 'sdk';
  if (p.scheme === 'exec') {
    const { program } = programWord(splitCommand(p.source.slice('exec:'.length)));
    if (program !== undefined && path.basename(program) === 'op') return 'cli';
  }
  return undefined;
}

/**
 * Worst case: a profile in constant use is refetched at REFRESH_AT of its TTL. Service accounts have
 * an hourly read budget; `exec:op` starts a new op process per fetch (a new approval prompt each
 * time with the desktop app).
 */
function onePasswordCheck(profiles: ProfileSummary[], status: StatusReply | undefined): DoctorCheck | undefined {
  const sdk = profiles.filter((p) => isOnePassword(p) === 'sdk');
  const cli = profiles.filter((p) => isOnePassword(p) === 'cli');
  if (sdk.length === 0 && cli.length === 0) return undefined;
  const perHour = (ps: ProfileSummary[]): number =>
    Math.ceil(ps.reduce((n, p) => n + 3_600_000 / (REFRESH_AT * p.ttlMs), 0));
  const notes = (status?.sources ?? []).filter((s) => s.kind === 'op').flatMap((s) => s.notes);
  const parts: string[] = [];
  if (sdk.length > 0) parts.push(`op:// profiles read at most ~${perHour(sdk)}/hour`);
  if (cli.length > 0)
    parts.push(`exec:op profiles start op at most ~${perHour(cli)} times/hour (each may ask you to approve)`);
  if (notes.length > 0) parts.push(`daemon: ${notes.join('; ')}`);
  const total = perHour(sdk) + perHour(cli);
  if (total > OP_SMALLEST_HOURLY_BUDGET) {
    return {
      id: '1password',
      status: 'warn',
      message: `${parts.join('; ')}: more than a Teams/Families service account's ${OP_SMALLEST_HOURLY_BUDGET} reads/hour`,
      fix: "raise those profiles' ttl",
    };
  }
  return {
    id: '1password',
    status: 'ok',
    message: `${parts.join('; ')} (budget: ${OP_SMALLEST_HOURLY_BUDGET}/hour on Teams/Families, 10,000 on Business)`,
  };
}

// ---- output ----

/** How doctor's text is coloured: by the CLI on a terminal, not at all elsewhere. */
export interface DoctorPaint {
  verdict(status: CheckStatus, text: string): string;
  dim(text: string): string;
}

const PLAIN: DoctorPaint = { verdict: (_status, text) => text, dim: (text) => text };

/** The id column's width: the common ids fit (shim:apiKeyHelper), a longer one (profile:NAME) takes what it needs. */
const ID_WIDTH = 17;

/**
 * One check as it is printed: `ok    credential      MESSAGE`, and the fix on its own line under
 * the message (one fix per line, easy to copy). Lines stand alone, so they print as checks finish.
 */
export function renderCheck(c: DoctorCheck, paint: DoctorPaint = PLAIN): string {
  const width = Math.max(ID_WIDTH, c.id.length);
  const line = `${paint.verdict(c.status, c.status.padEnd(4))}  ${c.id.padEnd(width)}  ${c.message}`;
  return c.fix ? `${line}\n${' '.repeat(4 + 2 + width + 2)}${paint.dim(`fix: ${c.fix}`)}\n` : `${line}\n`;
}

/** The last line: how many checks failed or warned. */
export function renderDoctorSummary(checks: readonly DoctorCheck[], paint: DoctorPaint = PLAIN): string {
  const fails = checks.filter((c) => c.status === 'fail').length;
  const warns = checks.filter((c) => c.status === 'warn').length;
  const summary =
    fails > 0
      ? paint.verdict(
          'fail',
          `${fails} check${fails === 1 ? '' : 's'} failed, ${warns} warning${warns === 1 ? '' : 's'}`,
        )
      : warns > 0
        ? paint.verdict('warn', `no failures, ${warns} warning${warns === 1 ? '' : 's'}`)
        : paint.verdict('ok', 'all good');
  return `\n${summary}\n`;
}

export function renderDoctor(checks: readonly DoctorCheck[], paint: DoctorPaint = PLAIN): string {
  return checks.map((c) => renderCheck(c, paint)).join('') + renderDoctorSummary(checks, paint);
}
