// The `aws:` settings block, shared by the aws-sm: and aws-credentials: sources:
//
//   aws:                          # top level: applies to every AWS profile
//     region: eu-west-1
//     profile: work               # a profile in ~/.aws/config (what AWS_PROFILE would name)
//     endpoint: http://127.0.0.1:4566
//   profiles:
//     claude:
//       source: aws-sm://prod/anthropic#api_key
//       aws: { region: us-east-1 } # per profile: overrides the top-level block key by key
//
// Every key is optional: what is missing comes from the AWS SDK's own resolution (AWS_REGION,
// AWS_PROFILE, ~/.aws/config, AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL). Unknown keys are
// refused, so a typo cannot silently fall back to the SDK's defaults.
import { AWS_REGION_PATTERN, AWS_SETTINGS_KEYS, awsSettingsSchema, type AwsSettings } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';

// The block's schema is shared with aws-credentials:, so it lives behind src/adapter.ts.
export { AWS_REGION_PATTERN, AWS_SETTINGS_KEYS, awsSettingsSchema, type AwsSettings };

/**
 * Validate one `aws:` block (top level or a profile's). `where` names it in the message,
 * e.g. "the top-level aws: block". Throws CONFIG_INVALID listing every problem.
 */
export function parseAwsSettings(raw: unknown, where: string): AwsSettings {
  if (raw === undefined || raw === null) return {};
  const result = awsSettingsSchema.safeParse(raw);
  if (result.success) return withoutUndefined(result.data);
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys
        .map((k) => `unknown key "${k}"${guessKey(k)} — known keys: ${AWS_SETTINGS_KEYS.join(', ')}`)
        .join('; ');
    }
    if (issue.path.length === 0) return 'must be a mapping with region, profile and/or endpoint';
    return issue.message;
  });
  throw new BrokerError('CONFIG_INVALID', `${where}: ${problems.join('; ')}`);
}

/** The settings a profile runs with: its own aws: block over the top-level one, key by key. */
export function resolveAwsSettings(settings: unknown, overrides: unknown): AwsSettings {
  return {
    ...parseAwsSettings(settings, 'the top-level aws: block'),
    ...parseAwsSettings(overrides, "this profile's aws: block"),
  };
}

function guessKey(key: string): string {
  const lower = key.toLowerCase();
  const guess = AWS_SETTINGS_KEYS.find(
    (k) => k === lower || (lower.length > 3 && (k.startsWith(lower.slice(0, 3)) || lower.startsWith(k.slice(0, 3)))),
  );
  return guess && guess !== key ? ` (did you mean "${guess}"?)` : '';
}

function withoutUndefined(settings: AwsSettings): AwsSettings {
  const out: AwsSettings = {};
  if (settings.region !== undefined) out.region = settings.region;
  if (settings.profile !== undefined) out.profile = settings.profile;
  if (settings.endpoint !== undefined) out.endpoint = settings.endpoint;
  return out;
}
