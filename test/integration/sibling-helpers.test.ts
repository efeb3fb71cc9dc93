// Claude Code's sibling helpers end to end: a real daemon, the shim run through `sh -c` as Claude
// Code runs it, and its stdout parsed as JSON with the exact shapes awsCredentialExport and
// otelHeadersHelper want. The AWS profiles are backed by a temporary shared credentials file and a
// real credential_process, read by the real AWS SDK inside the daemon.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GetReply } from '../../src/protocol/messages.js';
import { privateTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';

let daemon: DaemonHandle;
let dir: string;
const expiration = new Date(Math.floor(Date.now() / 1000) * 1000 + 3 * 60 * 60_000).toISOString();

beforeAll(async () => {
  dir = privateTempDir('kb-sib-');
  const credentials = path.join(dir, 'aws-credentials');
  const config = path.join(dir, 'aws-config');
  const processScript = path.join(dir, 'credential-process.sh');
  fs.writeFileSync(
    credentials,
    [
      '[static]',
      'aws_access_key_id = AKIASIBLING000000001',
      'aws_secret_access_key = sibling-secret-key',
      'aws_session_token = sibling-session-token',
      '',
      '[longterm]',
      'aws_access_key_id = AKIALONGTERM00000001',
      'aws_secret_access_key = longterm-secret',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  fs.writeFileSync(
    processScript,
    `#!/bin/sh\nprintf '%s' '{"Version":1,"AccessKeyId":"ASIAPROCESS000000001","SecretAccessKey":"process-secret","SessionToken":"process-token","Expiration":"${expiration}"}'\n`,
    { mode: 0o700 },
  );
  fs.writeFileSync(config, `[profile temporary]\ncredential_process = ${processScript}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'otel-token'), 'otel-bearer-token-77\n', { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'otel-headers.json'), '{"x-api-key":"otel-key-78","X-Org":"acme"}\n', {
    mode: 0o600,
  });
  daemon = await startDaemon({
    dir,
    config: [
      'profiles:',
      '  aws:',
      '    source: aws-credentials://static',
      '  aws-longterm:',
      '    source: aws-credentials://longterm',
      '  aws-temporary:',
      '    source: aws-credentials://temporary',
      '    ttl: 24h',
      '  otel:',
      `    source: file:${path.join(dir, 'otel-token')}`,
      '  otel-json:',
      `    source: file:${path.join(dir, 'otel-headers.json')}`,
      '',
    ].join('\n'),
    env: { AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_CONFIG_FILE: config, AWS_EC2_METADATA_DISABLED: 'true' },
  });
});

describe('keybroker-shim --format aws-credentials (awsCredentialExport)', () => {
  it('prints {"Credentials":{…}} for static keys with a session token', async () => {
    const r = await daemon.shim('--format aws-credentials aws');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      Credentials: {
        AccessKeyId: 'AKIASIBLING000000001',
        SecretAccessKey: 'sibling-secret-key',
        SessionToken: 'sibling-session-token',
      },
    });
  });

  it('prints long-term keys without SessionToken or Expiration', async () => {
    const r = await daemon.shim('--format aws-credentials aws-longterm');
    expect(JSON.parse(r.stdout)).toEqual({
      Credentials: { AccessKeyId: 'AKIALONGTERM00000001', SecretAccessKey: 'longterm-secret' },
    });
  });

  it('passes Expiration through, and the daemon caches until 5 minutes before it', async () => {
    const r = await daemon.shim('--format=aws-credentials aws-temporary');
    expect(JSON.parse(r.stdout)).toEqual({
      Credentials: {
        AccessKeyId: 'ASIAPROCESS000000001',
        SecretAccessKey: 'process-secret',
        SessionToken: 'process-token',
        Expiration: expiration,
      },
    });
    // The profile allows 24 h; the credentials last 3 h, so they are fresh until 5 minutes before.
    const reply = (await daemon.request({ v: 1, op: 'get', profile: 'aws-temporary' })) as GetReply;
    expect(reply.ok).toBe(true);
    const expected = Date.parse(expiration) - Date.now() - 5 * 60_000;
    expect(reply.expiresInMs).toBeLessThanOrEqual(expected + 1_000);
    expect(reply.expiresInMs).toBeGreaterThan(expected - 15_000);
  });

  it('refuses a profile whose value is not AWS credentials, with one line on stderr', async () => {
    const r = await daemon.shim('--format aws-credentials otel');
    expect(r.code).toBe(15);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('aws-credentials://');
    expect(r.stderr).not.toContain('otel-bearer-token-77');
  });
});

describe('keybroker-shim --format headers (otelHeadersHelper)', () => {
  it('turns a plain value into an Authorization: Bearer header', async () => {
    const r = await daemon.shim('--format headers otel');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ Authorization: 'Bearer otel-bearer-token-77' });
  });

  it('passes a flat JSON object value through unchanged', async () => {
    const r = await daemon.shim('--format headers otel-json');
    expect(JSON.parse(r.stdout)).toEqual({ 'x-api-key': 'otel-key-78', 'X-Org': 'acme' });
  });
});
