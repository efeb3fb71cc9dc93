// The config file's shape, validated with zod. Problems are reported with their YAML path.
import { z } from 'zod';
import { adapterConfigKeys } from '../../adapters/registry.js';
import { parseDuration } from './duration.js';

export const REPEAT_DETECTION = ['claude-code', 'always', 'off'] as const;
export type RepeatDetection = (typeof REPEAT_DETECTION)[number];

export const DEFAULTS = {
  ttlMs: 15 * 60_000,
  maxStaleMs: 60 * 60_000,
  timeoutMs: 8_000,
  repeatDetection: 'claude-code' as RepeatDetection,
};

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function duration(min: number, minText: string) {
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
    return parsed.ms;
  });
}

const ttl = () => duration(1000, '1s');
const maxStale = () => duration(0, '0s');
const timeout = () => duration(100, '100ms');
const repeatDetection = () =>
  z.enum(REPEAT_DETECTION, { error: () => `must be one of: ${REPEAT_DETECTION.join(', ')}` });
const settingsBlock = () =>
  z.record(z.string(), z.unknown(), { error: () => 'must be a mapping of settings' });

function adapterBlocks() {
  return Object.fromEntries(adapterConfigKeys().map((key) => [key, settingsBlock().optional()]));
}

export const PROFILE_KEYS = ['source', 'ttl', 'maxStale', 'timeout', 'repeatDetection'] as const;

export function buildConfigSchema() {
  const profile = z.strictObject({
    source: z.string({ error: () => 'needs a source URI, e.g. source: exec:op read op://Private/Anthropic/credential' }).min(1, 'must not be empty'),
    ttl: ttl().optional(),
    maxStale: maxStale().optional(),
    timeout: timeout().optional(),
    repeatDetection: repeatDetection().optional(),
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
    profiles: z.record(
      z.string().regex(PROFILE_NAME, 'profile names use letters, digits, ".", "_" and "-" (at most 64)'),
      profile,
      { error: () => 'must be a mapping of profile names to profiles' },
    ),
    ...adapterBlocks(),
  });
}

export type RawConfig = z.output<ReturnType<typeof buildConfigSchema>>;
export type RawProfile = RawConfig['profiles'][string];
