// Reading a JWT value's times, and what the cache makes of a value's expiry: table-driven units.
import { describe, expect, it } from 'vitest';
import { entryTimes, expiryOf, refreshMargin } from '../../src/cache/expiry.js';
import { MAX_JWT_BYTES, readJwtTimes } from '../../src/cache/jwt.js';
import { SecretValue } from '../../src/secret.js';
import { b64url, makeJwt } from '../helpers/jwt.js';

const times = (text: string) => readJwtTimes(Buffer.from(text));
const HEADER = b64url({ alg: 'ES256', typ: 'JWT' });
const SIG = 'c2lnbmF0dXJl';

describe('readJwtTimes', () => {
  it('reads exp, and iat for the start of its life', () => {
    expect(times(makeJwt({ sub: 'a', iat: 1_700_000_000, exp: 1_700_003_600 }))).toEqual({
      expiresAt: 1_700_003_600_000,
      issuedAt: 1_700_000_000_000,
    });
  });

  it('uses nbf when there is no iat, and keeps fractional seconds', () => {
    expect(times(makeJwt({ nbf: 1_700_000_000, exp: 1_700_000_100.5 }))).toEqual({
      expiresAt: 1_700_000_100_500,
      issuedAt: 1_700_000_000_000,
    });
  });

  it('reads an exp in the past as it is (the cache refuses to serve it)', () => {
    expect(times(makeJwt({ exp: 1 }))).toEqual({ expiresAt: 1000 });
    expect(times(makeJwt({ exp: 0 }))).toEqual({ expiresAt: 0 });
  });

  it('accepts an unsecured JWT (alg none, empty signature)', () => {
    expect(times(`${b64url({ alg: 'none' })}.${b64url({ exp: 2_000_000_000 })}.`)).toEqual({
      expiresAt: 2_000_000_000_000,
    });
  });

  it.each([
    ['no exp claim', { sub: 'a' }],
    ['exp as a string', { exp: '1700000000' }],
    ['exp as null', { exp: null }],
    ['exp as an object', { exp: { $date: 1 } }],
    ['exp beyond what a Date holds', { exp: 1e300 }],
    ['exp hugely negative', { exp: -1e300 }],
  ])('is a JWT without an expiry when it has %s', (_name, claims) => {
    expect(times(makeJwt(claims))).toEqual({});
  });

  it('treats an exp that JSON reads as Infinity (1e400) as no expiry', () => {
    expect(times(`${HEADER}.${Buffer.from('{"exp":1e400}').toString('base64url')}.${SIG}`)).toEqual({});
  });

  it.each([
    ['an API key', 'sk-ant-api03-abcdefghijklmnopqrstuvwxyz'],
    ['two parts', `${HEADER}.${b64url({ exp: 1 })}`],
    ['four parts', `${HEADER}.${b64url({ exp: 1 })}.${SIG}.x`],
    ['a JWE (five parts)', `${HEADER}.a.b.c.d`],
    ['an empty header', `.${b64url({ exp: 1 })}.${SIG}`],
    ['empty claims', `${HEADER}..${SIG}`],
    ['base64 padding', `${HEADER}=.${b64url({ exp: 1 })}.${SIG}`],
    ['standard base64 characters', `${HEADER}.${b64url({ exp: 1 })}.ab+/cd`],
    ['whitespace', ` ${HEADER}.${b64url({ exp: 1 })}.${SIG}`],
    ['a header that is not JSON', `${Buffer.from('not json').toString('base64url')}.${b64url({ exp: 1 })}.${SIG}`],
    ['a header without alg', `${b64url({ typ: 'JWT' })}.${b64url({ exp: 1 })}.${SIG}`],
    ['a header whose alg is not a string', `${b64url({ alg: 1 })}.${b64url({ exp: 1 })}.${SIG}`],
    ['a header that is an array', `${b64url(['alg'])}.${b64url({ exp: 1 })}.${SIG}`],
    ['claims that are not JSON', `${HEADER}.${Buffer.from('{exp:1').toString('base64url')}.${SIG}`],
    ['claims that are an array', `${HEADER}.${b64url([1, 2])}.${SIG}`],
    ['claims that are a number', `${HEADER}.${b64url(12)}.${SIG}`],
    ['a JSON document', JSON.stringify({ exp: 1, alg: 'x' })],
  ])('is not a JWT: %s', (_name, text) => {
    expect(times(text)).toBeUndefined();
  });

  it('does not decode a value larger than MAX_JWT_BYTES', () => {
    const big = makeJwt({ exp: 2_000_000_000, pad: 'x'.repeat(MAX_JWT_BYTES) });
    expect(times(big)).toBeUndefined();
  });
});

describe('expiryOf', () => {
  const jwt = (exp: number, iat?: number) =>
    SecretValue.fromString(makeJwt(iat === undefined ? { exp } : { exp, iat }));

  it('takes the earlier of the source’s expiresAt and the JWT’s exp', () => {
    expect(expiryOf(jwt(2_000), {})).toEqual({ at: 2_000_000, from: 'jwt' });
    expect(expiryOf(jwt(2_000, 1_000), { expiresAt: 3_000_000 })).toEqual({
      at: 2_000_000,
      from: 'jwt',
      issuedAt: 1_000_000,
    });
    expect(expiryOf(jwt(2_000), { expiresAt: 1_500_000, issuedAt: 1_000_000 })).toEqual({
      at: 1_500_000,
      from: 'source',
      issuedAt: 1_000_000,
    });
  });

  it('is undefined for a value that says nothing', () => {
    expect(expiryOf(SecretValue.fromString('sk-plain'), {})).toBeUndefined();
    expect(expiryOf(SecretValue.fromString('sk-plain'), { expiresAt: Number.NaN })).toBeUndefined();
  });
});

describe('refresh margin and entry times', () => {
  it('is min(60 s, 10% of the lifetime)', () => {
    expect(refreshMargin(8_000)).toBe(800);
    expect(refreshMargin(600_000)).toBe(60_000);
    expect(refreshMargin(24 * 3_600_000)).toBe(60_000);
  });

  const HOUR = 3_600_000;
  it.each([
    // [what, ttl, maxStale, expiry, fresh until, stale until] — fetched at t = 0
    ['no expiry: TTL and maxStale', HOUR, HOUR, undefined, HOUR, 2 * HOUR],
    [
      'an 8 s token under a 1 h TTL: fresh until 0.8 s before exp, never stale past it',
      HOUR,
      HOUR,
      { at: 8_000, from: 'jwt' as const },
      7_200,
      8_000,
    ],
    ['a 10 min token: a 60 s margin', HOUR, HOUR, { at: 600_000, from: 'jwt' as const }, 540_000, 600_000],
    ['a TTL shorter than the token still applies', 60_000, 0, { at: 600_000, from: 'jwt' as const }, 60_000, 60_000],
    ['maxStale ends before exp when shorter', 60_000, 30_000, { at: 600_000, from: 'jwt' as const }, 60_000, 90_000],
    [
      'iat 50 s ago: a 100 s life, a 10 s margin',
      HOUR,
      HOUR,
      { at: 50_000, from: 'jwt' as const, issuedAt: -50_000 },
      40_000,
      50_000,
    ],
    [
      'a token fetched with 1 s left of a 1 h life keeps half of that',
      HOUR,
      HOUR,
      { at: 1_000, from: 'jwt' as const, issuedAt: 1_000 - HOUR },
      500,
      1_000,
    ],
  ])('%s', (_what, ttl, maxStale, expiry, freshUntil, staleUntil) => {
    expect(entryTimes(0, ttl, maxStale, expiry)).toEqual({ freshUntil, staleUntil });
  });
});
