// Output formats for Claude Code's sibling helpers: the raw value for apiKeyHelper, the AWS
// credentials JSON for awsCredentialExport, a headers object for otelHeadersHelper.

export const FORMATS = ['raw', 'aws-credentials', 'headers'] as const;
export type Format = (typeof FORMATS)[number];

/** The value as `format` prints it; undefined when it is not AWS credentials and the format needs them. */
export function formatValue(value: string, format: Format): string | undefined {
  if (format === 'raw') return value;
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    json = undefined;
  }
  const isObject = typeof json === 'object' && json !== null && !Array.isArray(json);
  if (format === 'aws-credentials') {
    // awsCredentialExport wants {"Credentials":{AccessKeyId,SecretAccessKey,SessionToken,Expiration}}.
    const creds = isObject ? ((json as { Credentials?: unknown }).Credentials ?? json) : undefined;
    const c = creds as Record<string, unknown> | undefined;
    if (!c || typeof c.AccessKeyId !== 'string' || typeof c.SecretAccessKey !== 'string') {
      return undefined;
    }
    const out: Record<string, string> = { AccessKeyId: c.AccessKeyId, SecretAccessKey: c.SecretAccessKey };
    if (typeof c.SessionToken === 'string') out.SessionToken = c.SessionToken;
    if (typeof c.Expiration === 'string') out.Expiration = c.Expiration;
    return JSON.stringify({ Credentials: out });
  }
  // headers: otelHeadersHelper wants a flat object of header name to string.
  if (isObject && Object.values(json as object).every((v) => typeof v === 'string')) return JSON.stringify(json);
  return JSON.stringify({ Authorization: `Bearer ${value}` });
}
