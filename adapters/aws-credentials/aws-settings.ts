// The `aws:` settings block, shared by aws-sm: and aws-credentials: (registry configKey "aws"), at the
// top level and inside a profile: { region?, profile?, endpoint? }, nothing else. The schema is the
// shared one in src/aws-settings.ts (through src/adapter.ts), so the two sources can never disagree
// on what the block may hold; this file only turns its issues into one CONFIG_INVALID message.
import { awsSettingsSchema } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';

export { awsSettingsSchema };
export type AwsSettings = { region?: string | undefined; profile?: string | undefined; endpoint?: string | undefined };

const KNOWN_KEYS = ['region', 'profile', 'endpoint'].join(', ');

/**
 * Validate an `aws:` block. `where` names it in the error ("aws:" or "profiles.x.aws:"). Only keys
 * are named, never values: a block in the wrong place may hold anything.
 */
export function parseAwsSettings(raw: unknown, where: string): AwsSettings {
  if (raw === undefined || raw === null) return {};
  const result = awsSettingsSchema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys')
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (known keys: ${KNOWN_KEYS})`;
    if (issue.path.length === 0) return `must be a mapping of ${KNOWN_KEYS}`;
    return issue.message.replace(/^Invalid input: /, '');
  });
  throw new BrokerError('CONFIG_INVALID', `${where} ${problems.join('; ')}`);
}
