// Fake AWS identity endpoints for the aws-credentials: adapter, speaking the wire protocols the real
// SDK clients speak, so the SDK's own STS and SSO clients (signing, parsing, retries) are exercised:
//
//   STS AssumeRole — the AWS Query protocol: a SigV4-signed POST of a form body
//     (Action=AssumeRole&Version=2011-06-15&RoleArn=…), answered with AssumeRoleResponse XML, or an
//     ErrorResponse XML with <Code> on failure.
//     https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
//   SSO GetRoleCredentials — REST-JSON: GET /federation/credentials?account_id=…&role_name=… with the
//     access token in the x-amz-sso_bearer_token header, answered with {"roleCredentials":{…}} where
//     expiration is epoch milliseconds; errors carry x-amzn-errortype.
//     https://docs.aws.amazon.com/singlesignon/latest/PortalAPIReference/API_GetRoleCredentials.html
//
// Point the SDK at it with AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL_SSO (service-specific endpoints).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface IssuedCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

export interface StsCall {
  action: string;
  roleArn: string;
  roleSessionName: string;
  durationSeconds: number;
  /** The access key id from the SigV4 Authorization header (who signed the call). */
  signedBy: string | undefined;
  /** The credential scope region and service from the Authorization header. */
  scope: { region: string; service: string } | undefined;
}

export interface SsoCall {
  accountId: string;
  roleName: string;
  bearerToken: string | undefined;
}

/** An injected failure: the HTTP status and the AWS error code the service would send. */
export interface AwsFault {
  status: number;
  code: string;
  message: string;
}

export interface FakeAwsIdentity {
  url: string;
  stsCalls: StsCall[];
  ssoCalls: SsoCall[];
  /** Credentials handed out next (a fresh set is generated after each call unless set again). */
  nextCredentials(creds: Partial<IssuedCredentials>): void;
  /** Fail the next `count` calls (both services) with this fault. */
  failNext(fault: AwsFault, count?: number): void;
  /** The valid SSO access token; any other bearer token gets 401 UnauthorizedException. */
  ssoAccessToken: string;
  close(): Promise<void>;
}

let serial = 0;

function freshCredentials(lifetimeMs: number): IssuedCredentials {
  serial++;
  return {
    accessKeyId: `ASIAFAKE${String(serial).padStart(12, '0')}`,
    secretAccessKey: `fake-secret-${serial}-${Math.random().toString(36).slice(2)}`,
    sessionToken: `fake-session-token-${serial}-${Math.random().toString(36).slice(2)}`,
    expiration: new Date(Math.floor((Date.now() + lifetimeMs) / 1000) * 1000),
  };
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseAuthorization(
  header: string | undefined,
): { signedBy: string; region: string; service: string } | undefined {
  // AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/sts/aws4_request, SignedHeaders=…, Signature=…
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request,/.exec(header ?? '');
  return m ? { signedBy: m[1]!, region: m[2]!, service: m[3]! } : undefined;
}

export async function startFakeAwsIdentity(options: { lifetimeMs?: number } = {}): Promise<FakeAwsIdentity> {
  const lifetimeMs = options.lifetimeMs ?? 60 * 60_000;
  const stsCalls: StsCall[] = [];
  const ssoCalls: SsoCall[] = [];
  let next: Partial<IssuedCredentials> | undefined;
  const faults: AwsFault[] = [];
  const ssoAccessToken = `sso-access-token-${Math.random().toString(36).slice(2)}`;

  const issue = (durationMs: number): IssuedCredentials => {
    const creds = { ...freshCredentials(durationMs), ...next };
    next = undefined;
    return creds;
  };

  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const body = await readBody(req);
      if (req.method === 'POST' && url.pathname === '/') {
        const form = new URLSearchParams(body);
        const auth = parseAuthorization(req.headers.authorization);
        const call: StsCall = {
          action: form.get('Action') ?? '',
          roleArn: form.get('RoleArn') ?? '',
          roleSessionName: form.get('RoleSessionName') ?? '',
          durationSeconds: Number(form.get('DurationSeconds') ?? 3600),
          signedBy: auth?.signedBy,
          scope: auth ? { region: auth.region, service: auth.service } : undefined,
        };
        stsCalls.push(call);
        const fault = faults.shift();
        if (fault || !auth || call.action !== 'AssumeRole') {
          const f =
            fault ??
            (auth
              ? { status: 400, code: 'InvalidAction', message: 'only AssumeRole here' }
              : {
                  status: 403,
                  code: 'MissingAuthenticationToken',
                  message: 'Request is missing Authentication Token',
                });
          res.writeHead(f.status, { 'content-type': 'text/xml' });
          res.end(
            `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>${f.status >= 500 ? 'Receiver' : 'Sender'}</Type>` +
              `<Code>${xmlEscape(f.code)}</Code><Message>${xmlEscape(f.message)}</Message></Error><RequestId>fake-${serial}</RequestId></ErrorResponse>`,
          );
          return;
        }
        const creds = issue(Math.min(lifetimeMs, call.durationSeconds * 1000));
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end(
          `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>` +
            `<AssumedRoleUser><AssumedRoleId>AROAFAKE:${xmlEscape(call.roleSessionName)}</AssumedRoleId>` +
            `<Arn>arn:aws:sts::111122223333:assumed-role/fake/${xmlEscape(call.roleSessionName)}</Arn></AssumedRoleUser>` +
            `<Credentials><AccessKeyId>${creds.accessKeyId}</AccessKeyId><SecretAccessKey>${xmlEscape(creds.secretAccessKey)}</SecretAccessKey>` +
            `<SessionToken>${xmlEscape(creds.sessionToken)}</SessionToken><Expiration>${creds.expiration.toISOString()}</Expiration></Credentials>` +
            `</AssumeRoleResult><ResponseMetadata><RequestId>fake-${serial}</RequestId></ResponseMetadata></AssumeRoleResponse>`,
        );
        return;
      }
      if (req.method === 'GET' && url.pathname === '/federation/credentials') {
        const bearer = req.headers['x-amz-sso_bearer_token'];
        const call: SsoCall = {
          accountId: url.searchParams.get('account_id') ?? '',
          roleName: url.searchParams.get('role_name') ?? '',
          bearerToken: typeof bearer === 'string' ? bearer : undefined,
        };
        ssoCalls.push(call);
        const fault =
          faults.shift() ??
          (call.bearerToken === ssoAccessToken
            ? undefined
            : { status: 401, code: 'UnauthorizedException', message: 'Session token not found or invalid' });
        if (fault) {
          res.writeHead(fault.status, { 'content-type': 'application/json', 'x-amzn-errortype': fault.code });
          res.end(JSON.stringify({ message: fault.message }));
          return;
        }
        const creds = issue(lifetimeMs);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            roleCredentials: {
              accessKeyId: creds.accessKeyId,
              secretAccessKey: creds.secretAccessKey,
              sessionToken: creds.sessionToken,
              expiration: creds.expiration.getTime(),
            },
          }),
        );
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    })().catch(() => {
      res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stsCalls,
    ssoCalls,
    ssoAccessToken,
    nextCredentials: (creds) => {
      next = creds;
    },
    failNext: (fault, count = 1) => {
      for (let i = 0; i < count; i++) faults.push(fault);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
