// Codex's config.toml: where it is, reading it without ever echoing its contents (a provider may
// hold `experimental_bearer_token`, an `auth` command may carry a key in its args), which model
// provider Codex uses, and what it runs for that provider's key.
//
//   $CODEX_HOME/config.toml (default ~/.codex/config.toml)
//
//   model_provider = "work"                  # else the active profile's, else Codex's built-in "openai"
//   profile = "fast"                         # [profiles.fast] may name another model_provider
//   [model_providers.work]
//   name = "work"
//   base_url = "https://api.openai.com/v1"   # the default when left out
//   auth = { command = "/…/keybroker-shim", args = ["--refresh-interval-ms", "300000"], timeout_ms = 20000, refresh_interval_ms = 300000 }
//
// Facts from Codex 0.169.0 (docs/codex.md): a provider's `auth` cannot be combined with `env_key`,
// `experimental_bearer_token`, `requires_openai_auth` or `aws` (Codex refuses to start); for such a
// provider Codex reads no environment variable for the key (OPENAI_API_KEY and CODEX_API_KEY are
// ignored); the built-in providers (openai, ollama, lmstudio, amazon-bedrock) cannot be overridden,
// so a `[model_providers.openai]` table is ignored.
import path from 'node:path';
import { parse as parseToml } from '@decimalturn/toml-patch';
import { FileCheckError, readCheckedFile } from '../checked-file.js';
import { BrokerError } from '../errors.js';
import { REFRESH_INTERVAL_OPTION } from '../protocol/messages.js';
import { isKeybrokerShim } from './helper-command.js';

export const CODEX_HOME_ENV = 'CODEX_HOME';
export const MAX_CODEX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Codex's own providers: a table of the same name in config.toml is ignored. */
export const BUILT_IN_PROVIDERS: readonly string[] = ['openai', 'ollama', 'lmstudio', 'amazon-bedrock'];
/** A provider's keys Codex refuses beside `auth`. */
export const AUTH_CONFLICTS: readonly string[] = [
  'env_key',
  'experimental_bearer_token',
  'requires_openai_auth',
  'aws',
];
/** What Codex uses when config.toml names no model_provider. */
export const DEFAULT_PROVIDER = 'openai';
/** Codex's defaults for an auth table's keys. */
export const CODEX_AUTH_DEFAULTS = { timeoutMs: 5_000, refreshIntervalMs: 300_000 } as const;
/** A provider id keybroker writes: what a TOML bare key allows. */
export const PROVIDER_ID = /^[A-Za-z0-9_-]{1,64}$/;

export type TomlTable = Record<string, unknown>;

export function codexConfigPath(ctx: { env: NodeJS.ProcessEnv; home: string }): string {
  const dir = ctx.env[CODEX_HOME_ENV];
  return path.join(dir && path.isAbsolute(dir) ? dir : path.join(ctx.home, '.codex'), 'config.toml');
}

/** The file's text, or undefined when there is none. A FIFO in its place must not hang us. */
export async function readCodexConfigText(file: string): Promise<string | undefined> {
  try {
    const bytes = await readCheckedFile(file, {
      label: file,
      maxBytes: MAX_CODEX_CONFIG_BYTES,
      invalid: 'CONFIG_INVALID',
      trust: 'any',
    });
    return bytes.toString('utf8');
  } catch (err) {
    if (err instanceof FileCheckError)
      throw new BrokerError('CONFIG_INVALID', err.message, { fix: 'fix it by hand first' });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new BrokerError('CONFIG_INVALID', `cannot read ${file} (${code ?? 'error'})`);
  }
}

/** Parse config.toml; an error says where, never what (the parser's own message quotes the line). */
export function parseCodexConfig(text: string, file: string): TomlTable {
  try {
    return parseToml(text) as TomlTable;
  } catch (err) {
    const line = (err as { line?: unknown }).line;
    throw new BrokerError(
      'CONFIG_INVALID',
      `${file} is not valid TOML${typeof line === 'number' ? ` (line ${line})` : ''}`,
      {
        fix: 'fix it by hand first (keybroker does not rewrite a file it cannot parse)',
      },
    );
  }
}

export function isTable(value: unknown): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** The provider Codex uses with this config (no command-line flags): which one, and what chose it. */
export function activeProvider(data: TomlTable): { id: string; chosenBy: 'profile' | 'model_provider' | 'default' } {
  const profiles = isTable(data.profiles) ? data.profiles : {};
  const profile = typeof data.profile === 'string' ? profiles[data.profile] : undefined;
  if (isTable(profile) && typeof profile.model_provider === 'string')
    return { id: profile.model_provider, chosenBy: 'profile' };
  if (typeof data.model_provider === 'string') return { id: data.model_provider, chosenBy: 'model_provider' };
  return { id: DEFAULT_PROVIDER, chosenBy: 'default' };
}

export function providerTable(data: TomlTable, id: string): TomlTable | undefined {
  const providers = data.model_providers;
  if (!isTable(providers)) return undefined;
  const provider = providers[id];
  return isTable(provider) ? provider : undefined;
}

export interface CodexAuth {
  command: string;
  args: string[];
  timeoutMs: number | undefined;
  refreshIntervalMs: number | undefined;
}

/** The provider's auth table, when it is one Codex would read. */
export function providerAuth(provider: TomlTable | undefined): CodexAuth | undefined {
  const auth = provider?.auth;
  if (!isTable(auth) || typeof auth.command !== 'string') return undefined;
  const args = Array.isArray(auth.args) ? auth.args.map(String) : [];
  const number = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v : undefined);
  return {
    command: auth.command,
    args,
    timeoutMs: number(auth.timeout_ms),
    refreshIntervalMs: number(auth.refresh_interval_ms),
  };
}

export interface KeybrokerAuth {
  shim: string;
  profile: string | undefined;
  /** The shim's --refresh-interval-ms, when given as a number. */
  refreshIntervalMs: number | undefined;
}

/** If the auth command runs keybroker-shim, what it asks for. */
export function parseKeybrokerAuth(auth: CodexAuth): KeybrokerAuth | undefined {
  if (!isKeybrokerShim(auth.command)) return undefined;
  let profile: string | undefined;
  let refreshIntervalMs: number | undefined;
  for (let i = 0; i < auth.args.length; i++) {
    const a = auth.args[i]!;
    const interval =
      a === REFRESH_INTERVAL_OPTION
        ? auth.args[++i]
        : a.startsWith(`${REFRESH_INTERVAL_OPTION}=`)
          ? a.slice(REFRESH_INTERVAL_OPTION.length + 1)
          : undefined;
    if (interval !== undefined) refreshIntervalMs = /^[0-9]{1,10}$/.test(interval) ? Number(interval) : undefined;
    else if (a === '--socket') i++;
    else if (!a.startsWith('-')) profile = a;
  }
  return { shim: auth.command, profile, refreshIntervalMs };
}

/** A printable description of an auth command: keybroker's in full, any other by its program name only. */
export function describeAuth(auth: CodexAuth): string {
  if (parseKeybrokerAuth(auth)) return [auth.command, ...auth.args].join(' ');
  return /['"$`\\=\s]/.test(auth.command) ? '(a command)' : `${path.basename(auth.command)} …`;
}
