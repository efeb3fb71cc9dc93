// A Secrets Manager endpoint (a misbehaving LocalStack, a proxy, anything answering on the
// configured endpoint) that answers 200 and never stops sending: the SDK collected the whole body
// in memory until the profile timeout — gigabytes, then a RangeError that stopped the daemon
// (exit 70). The daemon must give up on a response larger than any secret at once, and stop
// reading it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { beforeAll, expect, it } from 'vitest';
import { cleanUp } from '../helpers/cleanup.js';
import { startDaemon, type DaemonHandle } from '../helpers/daemon.js';

let server: http.Server;
let sent = 0;
let d: DaemonHandle;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.write('{"Name":"x","SecretString":"');
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
      };
      res.on('drain', pump);
      res.on('error', () => {});
      pump();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanUp(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  d = await startDaemon({
    config: `profiles:\n  default:\n    source: aws-sm://x\n    timeout: 10s\n    aws: {region: us-east-1, endpoint: "http://127.0.0.1:${port}"}\n`,
    env: { AWS_ACCESS_KEY_ID: 'AKIAFAKEFAKEFAKE', AWS_SECRET_ACCESS_KEY: 'fake-secret-for-the-fake-endpoint' },
  });
});
it('an endless response body is refused as SOURCE_ERROR well within the timeout, and the daemon stops reading it', async () => {
  const started = Date.now();
  expect(await d.request({ v: 1, op: 'get', profile: 'default' }, 15_000)).toMatchObject({
    ok: false,
    error: { code: 'SOURCE_ERROR' },
  });
  expect(Date.now() - started).toBeLessThan(5_000);
  const after = sent;
  await new Promise((r) => setTimeout(r, 1_000));
  // Nobody reads any more: at most what the socket buffers took meanwhile.
  expect(sent - after).toBeLessThan(8 * 1024 * 1024);
  expect(await d.request({ v: 1, op: 'ping' })).toMatchObject({ ok: true });
});
