// Parsing aws-sm: source URIs, offline:
//
//   aws-sm://<secret name or full ARN>[?region=R][&versionStage=S | &versionId=ID][#json-key]
//
// Not parsed with WHATWG URL: a full ARN (arn:aws:secretsmanager:us-east-1:…) would read as a
// host and a port. Refusals never echo the text that failed: a key pasted where a secret id
// belongs is still a key.
import { BrokerError } from '../../src/errors.js';
import { AWS_REGION_PATTERN } from '../../src/adapter.js';

export interface SecretRef {
  /** The SecretId sent to GetSecretValue: a name or an ARN. */
  secretId: string;
  /** From ?region= or the ARN; otherwise the aws: block and the SDK decide. */
  region?: string;
  /** Where `region` came from: an ARN's region is part of the secret's identity, ?region= is a setting. */
  regionFrom?: 'query' | 'arn';
  versionStage?: string;
  versionId?: string;
  /** Read this top-level key of a JSON secret instead of the whole SecretString. */
  jsonKey?: string;
}

export const SCHEME_PREFIX = 'aws-sm://';
const QUERY_KEYS = ['region', 'versionStage', 'versionId'] as const;
type QueryKey = (typeof QUERY_KEYS)[number];

// Secret names use letters, digits and /_+=.@-; an ARN adds ':'. (Secrets Manager API reference.)
const SECRET_ID = /^[A-Za-z0-9/_+=.@:-]+$/;
const MAX_SECRET_ID = 2048;
const ARN = /^arn:([a-z-]+):secretsmanager:([^:]*):(\d{12}):secret:(.+)$/;
// GetSecretValue: VersionId is 32–64 characters (a UUID), VersionStage 1–256.
const VERSION_ID = /^[A-Za-z0-9-]{32,64}$/;
const VERSION_STAGE = /^[\x21-\x7e]{1,256}$/;
const MAX_JSON_KEY = 1024;

const EXAMPLE = 'e.g. aws-sm://prod/anthropic#api_key';

export function parseSecretUri(uri: string): SecretRef {
  if (!uri.startsWith(SCHEME_PREFIX)) {
    throw invalid(`write the secret after "aws-sm://", ${EXAMPLE}`);
  }
  let rest = uri.slice(SCHEME_PREFIX.length);
  let fragment: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    fragment = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
  }
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }

  const secretId = rest;
  if (secretId.length === 0) throw invalid(`needs a secret name or ARN after "aws-sm://", ${EXAMPLE}`);
  if (secretId.length > MAX_SECRET_ID) throw invalid(`the secret id is longer than ${MAX_SECRET_ID} characters`);
  if (!SECRET_ID.test(secretId)) {
    throw invalid(
      'the secret id may use only letters, digits and / _ + = . @ - (or be a full arn:…:secretsmanager:… ARN); percent-encoding is not used',
    );
  }
  const ref: SecretRef = { secretId };

  let arnRegion: string | undefined;
  if (secretId.startsWith('arn:')) {
    const m = ARN.exec(secretId);
    if (!m)
      throw invalid(
        'that ARN is not a Secrets Manager secret ARN (arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)',
      );
    arnRegion = m[2]!;
    if (!AWS_REGION_PATTERN.test(arnRegion))
      throw invalid('the region in that ARN is not an AWS region name such as us-east-1');
  }

  const params = parseQuery(query);
  if (params.region !== undefined) {
    if (!AWS_REGION_PATTERN.test(params.region)) throw invalid('?region= must be an AWS region name such as us-east-1');
    if (arnRegion !== undefined && arnRegion !== params.region) {
      throw invalid(`?region=${params.region} contradicts the ARN, which is in ${arnRegion}: drop ?region=`);
    }
  }
  if (arnRegion !== undefined) {
    ref.region = arnRegion;
    ref.regionFrom = 'arn';
  } else if (params.region !== undefined) {
    ref.region = params.region;
    ref.regionFrom = 'query';
  }

  if (params.versionStage !== undefined && params.versionId !== undefined) {
    throw invalid('give versionStage or versionId, not both');
  }
  if (params.versionStage !== undefined) {
    if (!VERSION_STAGE.test(params.versionStage))
      throw invalid('versionStage must be 1–256 printable characters without spaces, e.g. AWSPREVIOUS');
    ref.versionStage = params.versionStage;
  }
  if (params.versionId !== undefined) {
    if (!VERSION_ID.test(params.versionId))
      throw invalid('versionId must be a version UUID (32–64 letters, digits and hyphens)');
    ref.versionId = params.versionId;
  }

  if (fragment !== undefined) {
    const key = decode(fragment, 'the JSON key after "#"');
    if (key.length === 0)
      throw invalid('nothing after "#": name a JSON key, e.g. #api_key, or drop the "#" to use the whole secret');
    if (key.length > MAX_JSON_KEY) throw invalid(`the JSON key after "#" is longer than ${MAX_JSON_KEY} characters`);
    ref.jsonKey = key;
  }
  return ref;
}

/** The URI again, in its canonical form: what status and error messages show. */
export function formatSecretUri(ref: SecretRef, options: { withRegion?: boolean } = {}): string {
  const params: string[] = [];
  // A region taken from the ARN is already in the id.
  if (ref.region !== undefined && options.withRegion !== false && !ref.secretId.startsWith('arn:'))
    params.push(`region=${ref.region}`);
  if (ref.versionStage !== undefined) params.push(`versionStage=${encodeURIComponent(ref.versionStage)}`);
  if (ref.versionId !== undefined) params.push(`versionId=${ref.versionId}`);
  const query = params.length > 0 ? `?${params.join('&')}` : '';
  const key = ref.jsonKey !== undefined ? `#${encodeFragment(ref.jsonKey)}` : '';
  return `${SCHEME_PREFIX}${ref.secretId}${query}${key}`;
}

function parseQuery(query: string): Partial<Record<QueryKey, string>> {
  const out: Partial<Record<QueryKey, string>> = {};
  if (query.length === 0) return out;
  for (const part of query.split('&')) {
    if (part.length === 0) continue;
    const eq = part.indexOf('=');
    const rawName = eq >= 0 ? part.slice(0, eq) : part;
    const name = decode(rawName, 'a query parameter name');
    if (!(QUERY_KEYS as readonly string[]).includes(name)) {
      const guess = QUERY_KEYS.find((k) => k.toLowerCase() === name.toLowerCase());
      // The name is echoed only when it is a plain word: anything else may be pasted data.
      const shown = /^[A-Za-z_-]{1,32}$/.test(name) ? `"${name}"` : 'a query parameter';
      throw invalid(`unknown ${shown}${guess ? ` (did you mean "${guess}"?)` : ''} — known: ${QUERY_KEYS.join(', ')}`);
    }
    const key = name as QueryKey;
    if (out[key] !== undefined) throw invalid(`${key} is given twice`);
    const value = eq >= 0 ? decode(part.slice(eq + 1), `the value of ${key}`) : '';
    if (value.length === 0) throw invalid(`${key}= needs a value`);
    out[key] = value;
  }
  return out;
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw invalid(`${what} has a malformed %-escape`);
  }
}

function encodeFragment(key: string): string {
  return key.replace(/[^A-Za-z0-9_.~!$&'()*+,;=:@/?-]/g, (c) => encodeURIComponent(c));
}

function invalid(message: string): BrokerError {
  return new BrokerError('CONFIG_INVALID', `aws-sm: ${message}`);
}
