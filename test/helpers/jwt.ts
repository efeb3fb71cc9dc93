// Unsigned-in-spirit JWTs for tests: a real header and claims, and a random signature (keybroker
// never verifies one). Also written out as a script an exec: source can run to mint them.
import { randomBytes } from 'node:crypto';

export function b64url(json: unknown): string {
  return Buffer.from(JSON.stringify(json)).toString('base64url');
}

/** A JWT with these claims (times in seconds, as JWT has them). */
export function makeJwt(
  claims: Record<string, unknown>,
  header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' },
): string {
  return `${b64url(header)}.${b64url(claims)}.${randomBytes(32).toString('base64url')}`;
}

/**
 * A Node script that prints a fresh JWT whose exp is `lifetimeS` seconds from now (iat now), and
 * appends the served exp to `logFile` so a test can count the fetches.
 */
export function mintScript(lifetimeS: number, logFile: string): string {
  return `
const { randomBytes } = require('node:crypto');
const fs = require('node:fs');
const now = Date.now() / 1000;
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const exp = Math.floor(now) + ${lifetimeS};
fs.appendFileSync(${JSON.stringify(logFile)}, exp + '\\n');
process.stdout.write(b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ sub: 'kb-test', iat: Math.floor(now), exp }) + '.' + randomBytes(32).toString('base64url') + '\\n');
`;
}
