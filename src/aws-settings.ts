// The `aws:` settings block ({ region?, profile?, endpoint? }), shared by two sources: aws-sm: and
// aws-credentials: (registry configKey "aws"). One schema, so the two can never disagree on what
// the block may hold; each source turns its issues into its own CONFIG_INVALID message. Adapters
// reach it through src/adapter.ts (an adapter never imports another adapter).
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/** us-east-1, eu-central-2, us-gov-west-1, cn-north-1, us-isob-east-1 … */
export const AWS_REGION_PATTERN = /^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$/;
/** Names usable on a command line as they are (they appear in "run: aws sso login --profile X"). */
const PROFILE_PATTERN = /^[A-Za-z0-9_.@+=:,/-]{1,128}$/;

export const AWS_SETTINGS_KEYS = ['region', 'profile', 'endpoint'] as const;

export const awsSettingsSchema = z
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
