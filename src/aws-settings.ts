// The `aws:` settings block, shared by the aws-sm: and aws-credentials: sources (registry
// configKey "aws"), at the top level and inside a profile:
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
// refused, so a typo cannot silently fall back to the SDK's defaults. One schema and one parser,
// so the two sources can never disagree on what the block may hold or how a mistake reads;
// adapters reach them through src/adapter.ts (an adapter never imports another adapter).
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { closest } from './did-you-mean.js';
import { BrokerError } from './errors.js';

/** us-east-1, eu-central-2, us-gov-west-1, cn-north-1, us-isob-east-1 … */
export const AWS_REGION_PATTERN = /^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$/;
/** Names usable on a command line as they are (they appear in "run: aws sso login --profile X"). */
const PROFILE_PATTERN = /^[A-Za-z0-9_.@+=:,/-]{1,128}$/;

const AWS_SETTINGS_KEYS = ['region', 'profile', 'endpoint'] as const;

const awsSettingsSchema = z
  .strictObject({
    region: z
      .string({ error: () => 'region must be a string, e.g. us-east-1' })
      .regex(AWS_REGION_PATTERN, 'region must be an AWS region name such as us-east-1 or eu-west-2'),
    profile: z
      .string({ error: () => 'profile must be a string naming a profile in ~/.aws/config' })
      .regex(
        PROFILE_PATTERN,
        'profile must be a profile name from ~/.aws/config (letters, digits and _ . @ + = : , / -; no spaces)',
      ),
    endpoint: z
      .string({ error: () => 'endpoint must be a URL string, e.g. https://secretsmanager.eu-west-1.amazonaws.com' })
      .superRefine((value, ctx) => {
        const problem = endpointProblem(value);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
  })
  .partial();

export type AwsSettings = z.output<typeof awsSettingsSchema>;

function endpointProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'endpoint must be an absolute http:// or https:// URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'endpoint must be an http:// or https:// URL';
  // Credentials in the URL would end up in logs and status lines; AWS never takes them there.
  if (url.username || url.password) return 'endpoint must not contain a user name or password';
  if (url.search || url.hash) return 'endpoint must not have a query (?…) or fragment (#…)';
  return undefined;
}

/**
 * Where the AWS SDK's credential chain finds long-lived or cached credentials on this machine, and
 * the variables that hold them: what leads to a key kept in AWS (both sources read through it).
 * The config file is left out: it names profiles and SSO settings, not secrets.
 */
export function awsSecretLocations(env: NodeJS.ProcessEnv): { files: string[]; env: string[] } {
  const home = env.HOME || os.homedir();
  const expand = (p: string): string => (p.startsWith('~/') ? path.join(home, p.slice(2)) : p);
  const aws = path.join(home, '.aws');
  const credentials = env.AWS_SHARED_CREDENTIALS_FILE?.trim();
  return {
    files: [
      credentials ? expand(credentials) : path.join(aws, 'credentials'),
      // SSO access tokens, and the temporary credentials the CLI caches for assumed roles.
      path.join(aws, 'sso', 'cache'),
      path.join(aws, 'cli', 'cache'),
    ].filter((p) => path.isAbsolute(p)),
    env: ['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'],
  };
}

/**
 * Validate one `aws:` block: the top level's, or with `profile` that profile's. The error names
 * the block by its path in the config ("aws", "profiles.work.aws") and lists every problem.
 * Only keys are named, never values: a block in the wrong place may hold anything.
 */
export function parseAwsSettings(raw: unknown, profile?: string): AwsSettings {
  if (raw === undefined || raw === null) return {};
  const result = awsSettingsSchema.safeParse(raw);
  if (result.success) return withoutUndefined(result.data);
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const unknown = issue.keys.map((k) => {
        // As boto3 (region_name, profile_name, endpoint_url) and ~/.aws/config (endpoint_url) spell them.
        const guess =
          closest(k, AWS_SETTINGS_KEYS) ?? AWS_SETTINGS_KEYS.find((known) => k.toLowerCase().startsWith(known));
        return `unknown key "${k}"${guess ? ` (did you mean "${guess}"?)` : ''}`;
      });
      return `${unknown.join('; ')} — known keys: ${AWS_SETTINGS_KEYS.join(', ')}`;
    }
    if (issue.path.length === 0) return 'must be a mapping with region, profile and/or endpoint';
    return issue.message.replace(/^Invalid input: /, '');
  });
  const where = profile === undefined ? 'aws' : `profiles.${profile}.aws`;
  throw new BrokerError('CONFIG_INVALID', `${where}: ${problems.join('; ')}`);
}

function withoutUndefined(settings: AwsSettings): AwsSettings {
  const out: AwsSettings = {};
  if (settings.region !== undefined) out.region = settings.region;
  if (settings.profile !== undefined) out.profile = settings.profile;
  if (settings.endpoint !== undefined) out.endpoint = settings.endpoint;
  return out;
}
