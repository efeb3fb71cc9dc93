// The config file's shape, validated with zod. Problems are reported with their YAML path.
import { z } from 'zod';
import { adapterConfigKeys } from '../../adapters/registry.js';
import { MAX_PROFILE_TIMEOUT_MS } from '../protocol/messages.js';
import { formatDuration, parseDuration } from '../duration.js';

/**
 * Whose repeats count as "the key was rejected": `agents`, the key command of every agent CLI the
 * shims recognise (Claude Code's apiKeyHelper, Codex's auth command); `claude-code`, Claude Code's
 * only (the default before Codex was recognised); `always`, every caller but an agent's own tool
 * runs and sibling helpers; `off`.
 */
export const REPEAT_DETECTION = ['agents', 'claude-code', 'always', 'off'] as const;
export type RepeatDetection = (typeof REPEAT_DETECTION)[number];

export const DEFAULTS = {
  ttlMs: 15 * 60_000,
  maxStaleMs: 60 * 60_000,
  timeoutMs: 8_000,
  repeatDetection: 'agents' as RepeatDetection,
};

/**
 * Refresh-ahead fires at this fraction of a profile's TTL (± the cache's jitter). Here, with the
 * defaults, because doctor sizes read budgets with it and may not reach into the cache.
 */
export const REFRESH_AT = 0.75;

export const OUTPUT_FORMATS = ['text', 'json'] as const;

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function duration(min: number, minText: string, max?: number) {
  return z.unknown().transform((value, ctx) => {
    const parsed = parseDuration(value);
    if (!parsed.ok) {
      ctx.addIssue({ code: 'custom', message: parsed.reason });
      return z.NEVER;
    }
    if (parsed.ms < min) {
      ctx.addIssue({ code: 'custom', message: `must be at least ${minText}` });
      return z.NEVER;
    }
    if (max !== undefined && parsed.ms > max) {
      ctx.addIssue({
        code: 'custom',
        message: `must be at most ${formatDuration(max)} (clients wait that long for the daemon's answer)`,
      });
      return z.NEVER;
    }
    return parsed.ms;
  });
}

const ttl = () => duration(1000, '1s');
const maxStale = () => duration(0, '0s');
const timeout = () => duration(100, '100ms', MAX_PROFILE_TIMEOUT_MS);
const repeatDetection = () =>
  z.enum(REPEAT_DETECTION, { error: () => `must be one of: ${REPEAT_DETECTION.join(', ')}` });
const output = () => z.enum(OUTPUT_FORMATS, { error: () => `must be one of: ${OUTPUT_FORMATS.join(', ')}` });
const settingsBlock = () => z.record(z.string(), z.unknown(), { error: () => 'must be a mapping of settings' });

function adapterBlocks() {
  return Object.fromEntries(adapterConfigKeys().map((key) => [key, settingsBlock().optional()]));
}

/** A value written in the config, or read from one of its profiles (a collector token, an org-wide salt). */
const valueOrProfile = (example: string) =>
  z.union(
    [
      z.string().min(1, 'must not be empty'),
      z.strictObject({ profile: z.string().regex(PROFILE_NAME, 'must be a profile name') }),
    ],
    { error: () => `must be a string or {profile: NAME}, e.g. ${example}` },
  );

export const TELEMETRY_KEYS = ['endpoint', 'protocol', 'headers', 'salt', 'host', 'user', 'interval'] as const;

/** The only OTLP encoding the exporters send: JSON over HTTP (collectors take it on :4318). */
export const TELEMETRY_PROTOCOLS = ['http/json'] as const;

/**
 * `telemetry:` turns on OpenTelemetry export (docs/telemetry.md). The endpoint is a base URL:
 * /v1/metrics and /v1/logs are appended, as OTEL_EXPORTER_OTLP_ENDPOINT's are.
 */
function telemetryBlock() {
  return z.strictObject(
    {
      endpoint: z
        .string({ error: () => 'must be a URL, e.g. https://otel.example.com:4318' })
        .refine((u) => /^https?:\/\/[^/]/.test(u) && URL.canParse(u), 'must be an http:// or https:// URL')
        .optional(),
      protocol: z.enum(TELEMETRY_PROTOCOLS, { error: () => `must be ${TELEMETRY_PROTOCOLS.join(', ')}` }).optional(),
      headers: z
        .record(
          z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'must be an HTTP header name'),
          valueOrProfile('authorization: {profile: collector-token}'),
          { error: () => 'must be a mapping of header names to values' },
        )
        .optional(),
      salt: valueOrProfile('salt: {profile: fingerprint-salt}').optional(),
      host: z.boolean({ error: () => 'must be true or false' }).optional(),
      user: z.boolean({ error: () => 'must be true or false' }).optional(),
      interval: duration(1000, '1s').optional(),
    },
    { error: () => 'must be a mapping, e.g. telemetry: {endpoint: https://otel.example.com:4318}' },
  );
}

export const PROFILE_KEYS = ['source', 'ttl', 'maxStale', 'timeout', 'repeatDetection', 'output', 'multiline'] as const;

export function buildConfigSchema() {
  const profile = z.strictObject({
    source: z
      .string({ error: () => 'needs a source URI, e.g. source: exec:op read op://Private/Anthropic/credential' })
      .min(1, 'must not be empty'),
    ttl: ttl().optional(),
    maxStale: maxStale().optional(),
    timeout: timeout().optional(),
    repeatDetection: repeatDetection().optional(),
    output: output().optional(),
    multiline: z.boolean({ error: () => 'must be true or false' }).optional(),
    ...adapterBlocks(),
  });
  const defaults = z.strictObject({
    ttl: ttl().optional(),
    maxStale: maxStale().optional(),
    timeout: timeout().optional(),
    repeatDetection: repeatDetection().optional(),
  });
  return z.strictObject({
    defaults: defaults.optional(),
    directories: z
      .record(z.string().min(1, 'a directory must not be empty'), z.string({ error: () => 'must be a profile name' }), {
        error: () => 'must be a mapping of directories to profile names, e.g. ~/code/acme: work',
      })
      .optional(),
    audit: z.boolean({ error: () => 'must be true or false' }).optional(),
    telemetry: telemetryBlock().optional(),
    profiles: z.record(
      z.string().regex(PROFILE_NAME, 'profile names use letters, digits, ".", "_" and "-" (at most 64)'),
      profile,
      { error: () => 'must be a mapping of profile names to profiles' },
    ),
    ...adapterBlocks(),
  });
}

/**
 * The managed (organisation) config: the user config's keys, profiles optional, plus `locked:`,
 * the keys users may not change (checked against the known keys when the config is merged).
 */
export function buildManagedConfigSchema() {
  const base = buildConfigSchema();
  return base.extend({
    profiles: base.shape.profiles.default({}),
    locked: z
      .array(z.string({ error: () => 'each entry is a key such as defaults.maxStale' }), {
        error: () => 'must be a list of keys, e.g. [defaults.maxStale]',
      })
      .optional(),
  });
}

export type RawConfig = z.output<ReturnType<typeof buildConfigSchema>>;
export type RawManagedConfig = z.output<ReturnType<typeof buildManagedConfigSchema>>;
export type RawTelemetry = NonNullable<RawConfig['telemetry']>;
/** A config value given inline or by the profile that holds it. */
export type ValueOrProfile = string | { profile: string };
/** Keys of `defaults:`, each lockable as defaults.<key>. */
export const DEFAULT_KEYS = ['ttl', 'maxStale', 'timeout', 'repeatDetection'] as const;
