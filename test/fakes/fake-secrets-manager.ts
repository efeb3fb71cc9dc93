// A local AWS Secrets Manager endpoint for tests: speaks the real AWS JSON 1.1 protocol
// (POST /, X-Amz-Target: secretsmanager.<Operation>, Content-Type: application/x-amz-json-1.1,
// errors as {"__type": …, "message"|"Message": …}) so the real @aws-sdk/client-secrets-manager
// talks to it unchanged. Every request must carry a SigV4 Authorization header: its shape, scope
// (date/region/service), clock and access key are checked, and the signature is recomputed with
// @smithy/signature-v4 from the known test credentials, so a request signed for the wrong
// region, with the wrong secret key or not at all is refused the way AWS refuses it.
//
// Only GetSecretValue is served (the one call keybroker makes). Tests drive the backend
// directly: put() stores a new version (AWSCURRENT moves, the old one becomes AWSPREVIOUS, as
// PutSecretValue does), setStage() moves a label, fail() queues AWS-shaped errors, hold()
// delays answers. Every request is recorded without its secret values.
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Checksum, SourceData } from '@smithy/types';

export interface FakeCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface FakeSecretsManagerOptions {
  /** Regions this endpoint answers for (a request signed for another is refused). */
  regions?: string[];
  /** Access keys it accepts. */
  credentials?: FakeCredentials[];
  accountId?: string;
}

export interface InjectedError {
  /** The AWS error code sent as __type, e.g. ThrottlingException. */
  type: string;
  /** HTTP status; 400 unless the type is a server fault (InternalServiceError → 500). */
  status?: number;
  message?: string;
  /** How many requests fail this way (default 1; Infinity for every one). */
  times?: number;
  /** Only requests for this SecretId (name or ARN) fail. */
  secretId?: string;
  /** A Retry-After header sent with the error (delay-seconds or an HTTP-date). */
  retryAfter?: string;
}

export interface RecordedRequest {
  target: string | undefined;
  region: string | undefined;
  accessKeyId: string | undefined;
  secretId: string | undefined;
  versionId: string | undefined;
  versionStage: string | undefined;
  status: number;
  /** The __type of an error reply. */
  error: string | undefined;
  userAgent: string | undefined;
}

interface SecretVersion {
  id: string;
  string?: string;
  binary?: Buffer;
  stages: Set<string>;
  created: Date;
}

interface StoredSecret {
  name: string;
  arn: string;
  region: string;
  versions: SecretVersion[];
  deleted: boolean;
}

interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

class AwsError extends Error {
  retryAfter: string | undefined;
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
    readonly messageKey: 'message' | 'Message' = 'message',
  ) {
    super(message);
  }
}

const MAX_BODY_BYTES = 256 * 1024;
const CLOCK_SKEW_MS = 15 * 60_000;
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
const SERVER_FAULTS = new Set(['InternalServiceError', 'InternalFailure', 'ServiceUnavailable']);

export const TEST_CREDENTIALS: FakeCredentials = {
  accessKeyId: 'AKIAKBFAKETEST0001',
  secretAccessKey: 'kbFakeSecretAccessKey/for+tests/only0000',
};

/** A SHA-256 (or HMAC-SHA-256 when given a key) in the shape @smithy/signature-v4 expects. */
class NodeSha256 implements Checksum {
  readonly #secret: SourceData | undefined;
  #hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;

  constructor(secret?: SourceData) {
    this.#secret = secret;
    this.#hash = NodeSha256.#create(secret);
  }

  static #create(secret: SourceData | undefined): ReturnType<typeof createHash> | ReturnType<typeof createHmac> {
    return secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(secret));
  }

  update(data: SourceData): void {
    this.#hash.update(toBuffer(data));
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }

  reset(): void {
    this.#hash = NodeSha256.#create(this.#secret);
  }
}

function toBuffer(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

export class FakeSecretsManager {
  readonly requests: RecordedRequest[] = [];
  readonly regions: string[];
  readonly accountId: string;
  readonly #server: http.Server;
  readonly #credentials: Map<string, FakeCredentials>;
  readonly #secrets = new Map<string, StoredSecret>();
  readonly #failures: Array<InjectedError & { left: number }> = [];
  #holdMs = 0;
  #url = '';

  private constructor(options: FakeSecretsManagerOptions) {
    this.regions = options.regions ?? ['us-east-1'];
    this.accountId = options.accountId ?? '123456789012';
    this.#credentials = new Map((options.credentials ?? [TEST_CREDENTIALS]).map((c) => [c.accessKeyId, c]));
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  }

  static async start(options: FakeSecretsManagerOptions = {}): Promise<FakeSecretsManager> {
    const fake = new FakeSecretsManager(options);
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    const { port } = fake.#server.address() as AddressInfo;
    fake.#url = `http://127.0.0.1:${port}`;
    return fake;
  }

  /** Accept another access key (a key created in IAM). */
  addCredentials(credentials: FakeCredentials): void {
    this.#credentials.set(credentials.accessKeyId, credentials);
  }

  /** Stop accepting an access key (deleted in IAM): requests signed with it get UnrecognizedClientException. */
  revokeCredentials(accessKeyId: string): void {
    this.#credentials.delete(accessKeyId);
  }

  /** The endpoint URL to hand the SDK (AWS_ENDPOINT_URL_SECRETS_MANAGER or aws.endpoint). */
  get url(): string {
    return this.#url;
  }

  /** Store a new version of a secret (creating it) and make it AWSCURRENT. Returns its version id. */
  put(name: string, value: string | Uint8Array, options: { region?: string; stages?: string[] } = {}): string {
    const region = options.region ?? this.regions[0]!;
    const key = `${region}\0${name}`;
    let secret = this.#secrets.get(key);
    if (!secret) {
      // Secrets Manager appends a hyphen and six random characters to the name in the ARN.
      const suffix = randomBytes(6).toString('base64url').replace(/[-_]/g, 'x').slice(0, 6);
      secret = {
        name,
        region,
        arn: `arn:aws:secretsmanager:${region}:${this.accountId}:secret:${name}-${suffix}`,
        versions: [],
        deleted: false,
      };
      this.#secrets.set(key, secret);
    }
    const stages = options.stages ?? ['AWSCURRENT'];
    const previous = stages.includes('AWSCURRENT')
      ? secret.versions.find((v) => v.stages.has('AWSCURRENT'))
      : undefined;
    if (previous) {
      this.#moveStage(secret, 'AWSPREVIOUS');
      previous.stages.add('AWSPREVIOUS');
    }
    // A label marks one version at a time: taking it here removes it from any other.
    for (const stage of stages) this.#moveStage(secret, stage);
    const version: SecretVersion = { id: randomUUID(), stages: new Set(stages), created: new Date() };
    if (typeof value === 'string') version.string = value;
    else version.binary = Buffer.from(value);
    secret.versions.push(version);
    return version.id;
  }

  /** Move a staging label to a version (UpdateSecretVersionStage). */
  setStage(name: string, stage: string, versionId: string, region = this.regions[0]!): void {
    const secret = this.#secrets.get(`${region}\0${name}`);
    const version = secret?.versions.find((v) => v.id === versionId);
    if (!secret || !version) throw new Error(`fake: no version ${versionId} of ${name}`);
    this.#moveStage(secret, stage);
    version.stages.add(stage);
  }

  /** The ARN AWS would give the secret. */
  arnOf(name: string, region = this.regions[0]!): string {
    const secret = this.#secrets.get(`${region}\0${name}`);
    if (!secret) throw new Error(`fake: no secret ${name} in ${region}`);
    return secret.arn;
  }

  /** Mark a secret for deletion: reads fail with InvalidRequestException, as on AWS. */
  scheduleDeletion(name: string, region = this.regions[0]!): void {
    const secret = this.#secrets.get(`${region}\0${name}`);
    if (secret) secret.deleted = true;
  }

  /** Fail the next matching request(s) with an AWS-shaped error. */
  fail(error: InjectedError): void {
    this.#failures.push({ ...error, left: error.times ?? 1 });
  }

  /** Clear injected failures and delays. */
  reset(): void {
    this.#failures.length = 0;
    this.#holdMs = 0;
  }

  /** Delay every answer by this long (0 to stop). */
  hold(ms: number): void {
    this.#holdMs = ms;
  }

  /** Requests that reached GetSecretValue (signed correctly or not), optionally for one secret. */
  calls(secretId?: string): RecordedRequest[] {
    return this.requests.filter(
      (r) => r.target === 'secretsmanager.GetSecretValue' && (secretId === undefined || r.secretId === secretId),
    );
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #moveStage(secret: StoredSecret, stage: string): void {
    for (const v of secret.versions) v.stages.delete(stage);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req);
    const record: RecordedRequest = {
      target: header(req, 'x-amz-target'),
      region: undefined,
      accessKeyId: undefined,
      secretId: undefined,
      versionId: undefined,
      versionStage: undefined,
      status: 200,
      error: undefined,
      userAgent: header(req, 'user-agent'),
    };
    this.requests.push(record);
    if (this.#holdMs > 0) await new Promise((r) => setTimeout(r, this.#holdMs));
    try {
      if (body === undefined) throw new AwsError('SerializationException', 'request body too large');
      const auth = await this.#authenticate(req, body, record);
      if (req.method !== 'POST' || (req.url ?? '/') !== '/')
        throw new AwsError('UnknownOperationException', 'Unknown operation', 404);
      if (header(req, 'content-type') !== 'application/x-amz-json-1.1') {
        throw new AwsError('SerializationException', 'Content-Type must be application/x-amz-json-1.1');
      }
      if (record.target !== 'secretsmanager.GetSecretValue')
        throw new AwsError('UnknownOperationException', 'Unknown operation');
      let input: Record<string, unknown>;
      try {
        input = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        throw new AwsError('SerializationException', 'Start of structure or map found where not expected.');
      }
      record.secretId = typeof input.SecretId === 'string' ? input.SecretId : undefined;
      record.versionId = typeof input.VersionId === 'string' ? input.VersionId : undefined;
      record.versionStage = typeof input.VersionStage === 'string' ? input.VersionStage : undefined;
      this.#injected(record.secretId);
      const output = this.#getSecretValue(auth.region, record);
      send(res, 200, output);
    } catch (err) {
      const e = err instanceof AwsError ? err : new AwsError('InternalFailure', 'internal error in the fake', 500);
      record.status = e.status;
      record.error = e.type;
      send(
        res,
        e.status,
        { __type: e.type, [e.messageKey]: e.message },
        e.retryAfter === undefined ? {} : { 'Retry-After': e.retryAfter },
      );
    }
  }

  #injected(secretId: string | undefined): void {
    const i = this.#failures.findIndex((f) => f.left > 0 && (f.secretId === undefined || f.secretId === secretId));
    if (i < 0) return;
    const failure = this.#failures[i]!;
    failure.left--;
    if (failure.left <= 0) this.#failures.splice(i, 1);
    const status = failure.status ?? (SERVER_FAULTS.has(failure.type) ? 500 : 400);
    const error = new AwsError(
      failure.type,
      failure.message ?? defaultMessage(failure.type),
      status,
      SERVER_FAULTS.has(failure.type) || failure.type === 'DecryptionFailure' ? 'Message' : 'message',
    );
    error.retryAfter = failure.retryAfter;
    throw error;
  }

  #getSecretValue(region: string, record: RecordedRequest): Record<string, unknown> {
    const id = record.secretId;
    if (id === undefined || id.length === 0 || id.length > 2048) {
      throw new AwsError('InvalidParameterException', 'Invalid SecretId', 400, 'Message');
    }
    if (record.versionId !== undefined && (record.versionId.length < 32 || record.versionId.length > 64)) {
      throw new AwsError('InvalidParameterException', 'Invalid VersionId', 400, 'Message');
    }
    const secret = [...this.#secrets.values()].find((s) => s.region === region && (s.name === id || s.arn === id));
    if (!secret)
      throw new AwsError(
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
        400,
        'Message',
      );
    if (secret.deleted) {
      throw new AwsError(
        'InvalidRequestException',
        "You can't perform this operation on the secret because it was marked for deletion.",
        400,
        'Message',
      );
    }
    let version: SecretVersion | undefined;
    if (record.versionId !== undefined) {
      version = secret.versions.find((v) => v.id === record.versionId);
      if (!version || (record.versionStage !== undefined && !version.stages.has(record.versionStage))) {
        throw new AwsError(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for VersionId: ${record.versionId}`,
          400,
          'Message',
        );
      }
    } else {
      const stage = record.versionStage ?? 'AWSCURRENT';
      version = secret.versions.find((v) => v.stages.has(stage));
      if (!version)
        throw new AwsError(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for staging label: ${stage}`,
          400,
          'Message',
        );
    }
    const out: Record<string, unknown> = {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.id,
      VersionStages: [...version.stages],
      CreatedDate: version.created.getTime() / 1000,
    };
    if (version.string !== undefined) out.SecretString = version.string;
    if (version.binary !== undefined) out.SecretBinary = version.binary.toString('base64');
    return out;
  }

  async #authenticate(req: http.IncomingMessage, body: Buffer, record: RecordedRequest): Promise<ParsedAuthorization> {
    const authorization = header(req, 'authorization');
    if (!authorization) throw new AwsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
    const m = AUTHORIZATION.exec(authorization);
    if (!m)
      throw new AwsError(
        'IncompleteSignatureException',
        'Authorization header requires Credential, SignedHeaders and Signature, separated by commas.',
      );
    const auth: ParsedAuthorization = {
      accessKeyId: m[1]!,
      date: m[2]!,
      region: m[3]!,
      service: m[4]!,
      signedHeaders: m[5]!.split(';'),
      signature: m[6]!,
    };
    record.region = auth.region;
    record.accessKeyId = auth.accessKeyId;
    if (auth.service !== 'secretsmanager')
      throw new AwsError(
        'InvalidSignatureException',
        `Credential should be scoped to correct service: 'secretsmanager'.`,
      );
    if (!this.regions.includes(auth.region))
      throw new AwsError('InvalidSignatureException', `Credential should be scoped to a valid region.`);
    const amzDate = header(req, 'x-amz-date');
    if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate) || !amzDate.startsWith(auth.date)) {
      throw new AwsError('IncompleteSignatureException', 'X-Amz-Date must be set and match the credential scope date.');
    }
    const signingDate = new Date(
      `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
    );
    if (Math.abs(Date.now() - signingDate.getTime()) > CLOCK_SKEW_MS)
      throw new AwsError('InvalidSignatureException', 'Signature expired.');
    for (const required of ['host', 'x-amz-date', 'x-amz-target']) {
      if (!auth.signedHeaders.includes(required))
        throw new AwsError('InvalidSignatureException', `'${required}' must be a signed header.`);
    }
    const credentials = this.#credentials.get(auth.accessKeyId);
    if (!credentials)
      throw new AwsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
    if (credentials.sessionToken !== undefined && header(req, 'x-amz-security-token') !== credentials.sessionToken) {
      throw new AwsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
    }
    const headers: Record<string, string> = {};
    for (const name of auth.signedHeaders) {
      const value = header(req, name);
      if (value === undefined)
        throw new AwsError('IncompleteSignatureException', `Signed header '${name}' is missing from the request.`);
      headers[name] = value;
    }
    const host = headers.host!;
    const signer = new SignatureV4({
      credentials,
      region: auth.region,
      service: auth.service,
      sha256: NodeSha256,
      applyChecksum: false,
    });
    const signed = await signer.sign(
      {
        method: req.method ?? 'POST',
        protocol: 'http:',
        hostname: host.replace(/:\d+$/, ''),
        path: (req.url ?? '/').split('?')[0]!,
        query: {},
        headers,
        body,
      },
      { signingDate, signableHeaders: new Set(auth.signedHeaders) },
    );
    const expected = /Signature=([0-9a-f]{64})$/.exec(String(signed.headers.authorization))?.[1] ?? '';
    if (
      expected.length !== auth.signature.length ||
      !timingSafeEqual(Buffer.from(expected), Buffer.from(auth.signature))
    ) {
      throw new AwsError(
        'InvalidSignatureException',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
      );
    }
    return auth;
  }
}

/**
 * Headers for a hand-made request signed the way the SDK signs one, so tests can check what
 * the fake refuses (a body changed after signing, a wrong region) without the SDK in the way.
 */
export async function signedHeaders(options: {
  url: string;
  body: string;
  credentials: FakeCredentials;
  region: string;
  service?: string;
  target?: string;
}): Promise<Record<string, string>> {
  const url = new URL(options.url);
  const signer = new SignatureV4({
    credentials: options.credentials,
    region: options.region,
    service: options.service ?? 'secretsmanager',
    sha256: NodeSha256,
    applyChecksum: false,
  });
  const signed = await signer.sign({
    method: 'POST',
    protocol: url.protocol,
    hostname: url.hostname,
    path: '/',
    query: {},
    headers: {
      host: url.host,
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': options.target ?? 'secretsmanager.GetSecretValue',
    },
    body: options.body,
  });
  return signed.headers as Record<string, string>;
}

function defaultMessage(type: string): string {
  switch (type) {
    case 'ResourceNotFoundException':
      return "Secrets Manager can't find the specified secret.";
    case 'AccessDeniedException':
      return 'User: arn:aws:iam::123456789012:user/kb-test is not authorized to perform: secretsmanager:GetSecretValue because no identity-based policy allows the secretsmanager:GetSecretValue action';
    case 'DecryptionFailure':
      return "Secrets Manager can't decrypt the protected secret text using the provided KMS key.";
    case 'ThrottlingException':
      return 'Rate exceeded';
    case 'InternalServiceError':
      return 'An error occurred on the server side.';
    default:
      return `${type} (injected by the fake)`;
  }
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function readBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, body: object, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...extra,
    'Content-Type': 'application/x-amz-json-1.1',
    'Content-Length': Buffer.byteLength(text),
    'x-amzn-RequestId': randomUUID(),
    Date: new Date().toUTCString(),
  });
  res.end(text);
}
