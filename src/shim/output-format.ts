// Output formats for Claude Code's sibling helpers: the raw value for apiKeyHelper, the AWS
// credentials JSON for awsCredentialExport, a headers object for otelHeadersHelper and MCP servers'
// headersHelper.

export const FORMATS = ['raw', 'aws-credentials', 'headers'] as const;
export type Format = (typeof FORMATS)[number];

/** An HTTP header name (RFC 9110's token): what `--header` accepts. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;

/**
 * The value as `format` prints it; undefined when it is not AWS credentials and the format needs
 * them. `header`: for `headers`, the header a plain value goes in, as it is (default:
 * `Authorization: Bearer <value>`).
 */
export function formatValue(value: string, format: Format, header?: string): string | undefined {
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
  return JSON.stringify(header === undefined ? { Authorization: `Bearer ${value}` } : { [header]: value });
}
