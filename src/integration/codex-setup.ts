// `keybroker setup codex`: point a Codex model provider's auth command at keybroker-shim in
// config.toml, keeping everything else in the file as it was (comments, order, spacing: a
// format-preserving TOML patch), with refresh_interval_ms fitted to the profile's TTL and passed
// to the shim too (Codex does not pass it on; the shim needs it to tell a re-run after a 401 from
// Codex's scheduled one). Idempotent: a second run with the same answer changes nothing and writes
// no backup.
import { patch as patchToml } from '@decimalturn/toml-patch';
import { AUTOSTART_DEADLINE_MS } from '../client/autostart.js';
import { DEFAULTS } from '../config/schema.js';
import { BrokerError } from '../errors.js';
import { REFRESH_INTERVAL_OPTION } from '../protocol/messages.js';
import { helperTtlFor } from './claude-setup.js';
import {
  activeProvider,
  AUTH_CONFLICTS,
  BUILT_IN_PROVIDERS,
  codexConfigPath,
  describeAuth,
  isTable,
  MAX_CODEX_CONFIG_BYTES,
  parseCodexConfig,
  parseKeybrokerAuth,
  PROVIDER_ID,
  providerAuth,
  readCodexConfigText,
  type CodexAuth,
  type TomlTable,
} from './codex-config.js';
import { asWriteRefusal, replaceFile } from './file-replace.js';
import { unwrittenResult, writtenResult, type SetupChange, type SetupFileResult } from './setup-result.js';

/** Codex's default endpoint for a provider without base_url. */
const OPENAI_BASE_URL = 'https://api.openai.com/v1';
/** Room for Node's start-up on top of autostart and the source's own timeout. */
const AUTH_TIMEOUT_MARGIN_MS = 2_000;

export interface SetupCodexOptions {
  env: NodeJS.ProcessEnv;
  home: string;
  /** Absolute path of keybroker-shim. */
  shim: string;
  /** Undefined: the provider config.toml's model_provider names. */
  provider: string | undefined;
  /** Undefined: no profile argument, the daemon picks one by Codex's working directory. */
  profile: string | undefined;
  /** Replace a different auth command, and drop the keys Codex refuses beside one. */
  force: boolean;
  dryRun: boolean;
  now: Date;
  /** The served profiles' shortest TTL and longest timeout (undefined: no config yet, the defaults). */
  profileTtlMs: number | undefined;
  profileTimeoutMs: number | undefined;
}

export interface SetupCodexResult extends SetupFileResult {
  provider: string;
}

/** The auth table keybroker writes, in Codex's key order. */
export function codexAuthFor(
  options: Pick<SetupCodexOptions, 'shim' | 'profile' | 'profileTtlMs' | 'profileTimeoutMs'>,
) {
  const refreshIntervalMs = helperTtlFor(options.profileTtlMs ?? DEFAULTS.ttlMs);
  return {
    command: options.shim,
    args: [
      REFRESH_INTERVAL_OPTION,
      String(refreshIntervalMs),
      ...(options.profile === undefined ? [] : [options.profile]),
    ],
    // A cold start may autostart the daemon, then wait for the source.
    timeout_ms: AUTOSTART_DEADLINE_MS + (options.profileTimeoutMs ?? DEFAULTS.timeoutMs) + AUTH_TIMEOUT_MARGIN_MS,
    refresh_interval_ms: refreshIntervalMs,
  };
}

export async function setupCodex(options: SetupCodexOptions): Promise<SetupCodexResult> {
  const file = codexConfigPath(options);
  const original = await readCodexConfigText(file);
  const data = parseCodexConfig(original ?? '', file);
  const id = providerId(data, options.provider, file);
  const providers = data.model_providers ?? (data.model_providers = {});
  if (!isTable(providers))
    throw new BrokerError('CONFIG_INVALID', `${file}: model_providers is not a table`, { fix: 'fix it by hand first' });
  const key = `model_providers.${id}`;
  if (providers[id] !== undefined && !isTable(providers[id]))
    throw new BrokerError('CONFIG_INVALID', `${file}: ${key} is not a table`, { fix: 'fix it by hand first' });
  const changes: SetupChange[] = [];
  const warnings: string[] = [];
  let provider = providers[id] as TomlTable | undefined;
  if (provider === undefined) {
    provider = providers[id] = { name: id };
    changes.push({ key, before: undefined, after: `a new provider for ${OPENAI_BASE_URL}` });
    warnings.push(
      `${key} did not exist: created it for OpenAI's API (${OPENAI_BASE_URL}); set base_url in it for another endpoint`,
    );
  }

  const conflicts = AUTH_CONFLICTS.filter((k) => provider[k] !== undefined && provider[k] !== false);
  if (conflicts.length > 0 && !options.force) {
    throw new BrokerError(
      'USAGE',
      `${file}: ${key} sets ${conflicts.join(', ')}, which Codex refuses beside an auth command; rerun with --force to remove ${conflicts.length === 1 ? 'it' : 'them'} (a backup is written first)`,
    );
  }
  for (const k of conflicts) {
    delete provider[k];
    changes.push({ key: `${key}.${k}`, before: '(set)', after: '(removed)' });
  }

  const wanted = codexAuthFor(options);
  putAuth(provider, wanted, { file, key, force: options.force, profile: options.profile }, changes);

  const active = activeProvider(data);
  if (active.id !== id) {
    warnings.push(
      `Codex uses provider "${active.id}" here (${active.chosenBy === 'default' ? 'its default' : active.chosenBy === 'profile' ? `profile "${String(data.profile)}"` : 'model_provider'}), not "${id}": set model_provider = "${id}" in ${file}, or run codex -c model_provider=${id}`,
    );
  }

  const result: SetupCodexResult = { provider: id, ...unwrittenResult(file, original, changes, warnings) };
  if (changes.length === 0 || options.dryRun) return result;

  const text = patchToml(original ?? '', data);
  // A patch that does not read back as what we meant is not written.
  const check = providerAuth(providerOf(parseCodexConfig(text, file), id));
  if (!check || !sameAuth(authTable(check), wanted))
    throw new BrokerError('INTERNAL', `could not rewrite ${file} safely; nothing was changed`);
  let written;
  try {
    written = await replaceFile(file, text, { now: options.now, original, maxBytes: MAX_CODEX_CONFIG_BYTES });
  } catch (err) {
    throw asWriteRefusal(err, file);
  }
  return { ...result, ...writtenResult(written) };
}

/**
 * Point the provider's auth table at `wanted`, noting the change; refuses another auth command, or
 * keybroker's own for a named profile when no profile is given, unless forced.
 */
function putAuth(
  provider: TomlTable,
  wanted: ReturnType<typeof codexAuthFor>,
  ctx: { file: string; key: string; force: boolean; profile: string | undefined },
  changes: SetupChange[],
): void {
  const current = provider.auth;
  const currentAuth = providerAuth(provider);
  if (!sameAuth(current, wanted)) {
    const ours = currentAuth && parseKeybrokerAuth(currentAuth);
    if (current !== undefined && !ctx.force) {
      if (!ours) {
        const shown = currentAuth ? describeAuth(currentAuth) : '(not an auth table)';
        throw new BrokerError(
          'USAGE',
          `${ctx.file}: ${ctx.key} already has another auth command (${shown}); rerun with --force to replace it (a backup is written first)`,
        );
      }
      // keybroker's own is an update when the profile stays (or is named); without --profile, one
      // that names a profile is kept unless forced: dropping it would hand the choice to directories:.
      if (ours.profile !== undefined && ctx.profile === undefined) {
        throw new BrokerError(
          'USAGE',
          `${ctx.file}: ${ctx.key} already runs keybroker-shim for profile "${ours.profile}"; keep it with --profile ${ours.profile}, or replace it with --force (the directory then picks the profile; a backup is written first)`,
        );
      }
    }
    changes.push({
      key: `${ctx.key}.auth`,
      before: currentAuth ? describeAuth(currentAuth) : current === undefined ? undefined : '(not an auth table)',
      after: `${describeAuth(authOf(wanted))} (refresh_interval_ms = ${wanted.refresh_interval_ms}, timeout_ms = ${wanted.timeout_ms})`,
    });
    // Keys of Codex's own we do not write (cwd) stay as they were.
    provider.auth = { ...(isTable(current) ? current : {}), ...wanted };
  }
}

/** --provider, else the one config.toml names; never one of Codex's own, which take no auth command. */
function providerId(data: TomlTable, flag: string | undefined, file: string): string {
  const active = activeProvider(data);
  const id = flag ?? (active.chosenBy === 'default' ? undefined : active.id);
  if (id === undefined)
    throw new BrokerError(
      'USAGE',
      `${file} names no model_provider, so Codex uses its built-in "${active.id}", which takes no auth command`,
      {
        fix: 'name a provider of your own: keybroker setup codex --provider NAME (then set model_provider = "NAME")',
      },
    );
  if (!PROVIDER_ID.test(id))
    throw new BrokerError(
      'USAGE',
      `provider "${id}" is not a name keybroker writes (letters, digits, _ and -, at most 64)`,
    );
  if (BUILT_IN_PROVIDERS.includes(id))
    throw new BrokerError(
      'USAGE',
      `"${id}" is one of Codex's built-in providers, which cannot be given an auth command`,
      {
        fix: `use a provider of your own: keybroker setup codex --provider ${id}-keybroker (then set model_provider = "${id}-keybroker")`,
      },
    );
  return id;
}

function providerOf(data: TomlTable, id: string): TomlTable | undefined {
  const providers = data.model_providers;
  return isTable(providers) && isTable(providers[id]) ? providers[id] : undefined;
}

function authOf(table: ReturnType<typeof codexAuthFor>): CodexAuth {
  return {
    command: table.command,
    args: table.args,
    timeoutMs: table.timeout_ms,
    refreshIntervalMs: table.refresh_interval_ms,
  };
}

function authTable(auth: CodexAuth): TomlTable {
  return {
    command: auth.command,
    args: auth.args,
    timeout_ms: auth.timeoutMs,
    refresh_interval_ms: auth.refreshIntervalMs,
  };
}

/** The auth table already says what keybroker would write (other keys of it aside). */
function sameAuth(current: unknown, wanted: TomlTable): boolean {
  if (!isTable(current)) return false;
  return Object.entries(wanted).every(([k, v]) => JSON.stringify(current[k]) === JSON.stringify(v));
}
