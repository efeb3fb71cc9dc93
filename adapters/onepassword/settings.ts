// The `onepassword:` config block (top level) and its per-profile override, validated with zod.
// Credential keys (account, tokenFile, auth) may be set per profile; the read budget and batching
// keys apply to a whole token, so they live only in the top-level block.
import os from 'node:os';
import { z } from 'zod';
import { parseDuration, resolveUserPath } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';

export const AUTH_MODES = ['auto', 'desktop', 'service-account'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

/** Teams and Families service accounts: 1,000 reads an hour (Business: 10,000). */
export const DEFAULT_READS_PER_HOUR = 1000;
export const DEFAULT_BATCH_WINDOW_MS = 10;
export const MAX_BATCH_WINDOW_MS = 1000;
export const DEFAULT_MAX_BATCH = 50;

const CREDENTIAL_KEYS = ['account', 'tokenFile', 'auth'] as const;
const TOKEN_WIDE_KEYS = ['readsPerHour', 'backgroundReadsPerHour', 'batchWindow', 'maxBatch'] as const;

export interface CredentialSettings {
  account?: string | undefined;
  /** Absolute path, `~` already expanded. */
  tokenFile?: string | undefined;
  /** As written, for messages. */
  tokenFileWritten?: string | undefined;
  auth: AuthMode;
}

export interface OnePasswordSettings {
  credentials: CredentialSettings;
  readsPerHour: number;
  backgroundReadsPerHour: number;
  batchWindowMs: number;
  maxBatch: number;
}

const wholeNumber = (min: number, max: number, what: string) =>
  z
    .number({ error: () => `must be a whole number (${what})` })
    .int(`must be a whole number (${what})`)
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

const credentialShape = {
  account: z
    .string({ error: () => 'must be your 1Password account name as the desktop app shows it, or its UUID' })
    .trim()
    .min(1, 'must not be empty')
    .max(256, 'is too long for an account name')
    .optional(),
  tokenFile: z
    .string({ error: () => 'must be the path of a file holding a service account token' })
    .min(1, 'must not be empty')
    .max(4096, 'is too long for a path')
    .optional(),
  auth: z.enum(AUTH_MODES, { error: () => `must be one of: ${AUTH_MODES.join(', ')}` }).optional(),
};

const topLevelSchema = z.strictObject({
  ...credentialShape,
  readsPerHour: wholeNumber(
    1,
    1_000_000,
    "your service account's hourly read limit: 1000 on Teams/Families, 10000 on Business",
  ).optional(),
  backgroundReadsPerHour: wholeNumber(0, 1_000_000, 'reads an hour background refreshes may use').optional(),
  batchWindow: z.unknown().optional(),
  maxBatch: wholeNumber(1, 1000, 'references per resolveAll call').optional(),
});

const profileSchema = z.strictObject(credentialShape);

/** Validate the top-level block. Throws CONFIG_INVALID naming every problem. */
export function parseSettings(raw: unknown, env: NodeJS.ProcessEnv): OnePasswordSettings {
  const result = topLevelSchema.safeParse(raw ?? {});
  if (!result.success) throw configError('onepassword', result.error.issues, [...CREDENTIAL_KEYS, ...TOKEN_WIDE_KEYS]);
  const s = result.data;
  const readsPerHour = s.readsPerHour ?? DEFAULT_READS_PER_HOUR;
  // Half the token's limit by default: background refreshes never starve reads someone waits for.
  const backgroundReadsPerHour = s.backgroundReadsPerHour ?? Math.floor(readsPerHour / 2);
  if (backgroundReadsPerHour > readsPerHour) {
    throw new BrokerError(
      'CONFIG_INVALID',
      `onepassword.backgroundReadsPerHour (${backgroundReadsPerHour}) must not exceed onepassword.readsPerHour (${readsPerHour})`,
    );
  }
  const batchWindowMs = s.batchWindow === undefined ? DEFAULT_BATCH_WINDOW_MS : parseBatchWindow(s.batchWindow);
  return {
    credentials: credentialsFrom(s, env, 'onepassword'),
    readsPerHour,
    backgroundReadsPerHour,
    batchWindowMs,
    maxBatch: s.maxBatch ?? DEFAULT_MAX_BATCH,
  };
}

/**
 * A profile's own `onepassword:` block. When it names any credential key, it replaces the
 * top-level credentials as a whole: `account: personal` in a profile must not be overruled by a
 * top-level tokenFile.
 */
export function credentialsForProfile(
  top: CredentialSettings,
  raw: unknown,
  env: NodeJS.ProcessEnv,
  profile: string,
): CredentialSettings {
  if (raw === undefined || raw === null) return top;
  const where = `profiles.${profile}.onepassword`;
  if (typeof raw === 'object' && !Array.isArray(raw)) {
    const tokenWide = Object.keys(raw).filter((k) => (TOKEN_WIDE_KEYS as readonly string[]).includes(k));
    if (tokenWide.length > 0) {
      throw new BrokerError(
        'CONFIG_INVALID',
        `${where}: ${tokenWide.join(', ')} applies to a whole token — set it in the top-level onepassword: block`,
      );
    }
  }
  const result = profileSchema.safeParse(raw);
  if (!result.success) throw configError(where, result.error.issues, [...CREDENTIAL_KEYS]);
  if (Object.keys(result.data).length === 0) return top;
  return credentialsFrom(result.data, env, where);
}

function credentialsFrom(
  s: { account?: string | undefined; tokenFile?: string | undefined; auth?: AuthMode | undefined },
  env: NodeJS.ProcessEnv,
  where: string,
): CredentialSettings {
  const out: CredentialSettings = { auth: s.auth ?? 'auto' };
  if (s.account !== undefined) out.account = s.account;
  if (s.tokenFile !== undefined) {
    out.tokenFile = resolveUserPath(s.tokenFile, env.HOME || os.homedir(), `${where}.tokenFile`);
    out.tokenFileWritten = s.tokenFile;
  }
  if (out.auth === 'desktop' && out.tokenFile !== undefined) {
    throw new BrokerError(
      'CONFIG_INVALID',
      `${where}: auth: desktop uses the desktop app, so tokenFile does nothing — remove one of them`,
    );
  }
  if (out.auth === 'service-account' && out.account !== undefined) {
    throw new BrokerError(
      'CONFIG_INVALID',
      `${where}: auth: service-account uses a token, so account does nothing — remove one of them`,
    );
  }
  return out;
}

/** `10ms`, `0.2s`, or a number of seconds (as every duration in the config); at most 1s. */
export function parseBatchWindow(value: unknown): number {
  const parsed = parseDuration(value);
  if (!parsed.ok)
    throw new BrokerError('CONFIG_INVALID', 'onepassword.batchWindow: expected a duration such as 10ms or 0.1s');
  const ms = parsed.ms;
  if (ms > MAX_BATCH_WINDOW_MS)
    throw new BrokerError(
      'CONFIG_INVALID',
      `onepassword.batchWindow: at most ${MAX_BATCH_WINDOW_MS}ms (it delays the first fetch of each batch)`,
    );
  return ms;
}

function configError(where: string, issues: z.core.$ZodIssue[], known: readonly string[]): BrokerError {
  const parts = issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} — known keys: ${known.join(', ')}`;
    }
    if (issue.code === 'invalid_type' && issue.path.length === 0) return `${where}: must be a mapping of settings`;
    const at = issue.path.map(String).join('.');
    return `${where}${at ? `.${at}` : ''}: ${issue.message.replace(/^Invalid input: /, '')}`;
  });
  return new BrokerError('CONFIG_INVALID', parts.join('; '));
}
