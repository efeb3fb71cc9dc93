// The one redaction function, as a table: what it removes and what it must leave readable.
import { describe, expect, it } from 'vitest';
import { redactText, SecretValue, ServedValues } from '../../src/secret.js';

describe('redactText', () => {
  const served = new ServedValues();
  for (const v of ['kb-value-one-91', 'ünïcode-välue-7', 'short']) served.add(SecretValue.fromString(v));

  it.each([
    ['a served value anywhere in the line', 'x kb-value-one-91 y', 'x [redacted] y'],
    ['a served value twice and glued to text', 'akb-value-one-91bkb-value-one-91', 'a[redacted]b[redacted]'],
    ['a non-ASCII served value', 'got ünïcode-välue-7!', 'got [redacted]!'],
    ['an Anthropic key', 'key sk-ant-api03-abc_DEF-123 refused', 'key [masked] refused'],
    ['a Vault token', 'token hvs.CAESIJ3abcdefghijklmnopqrstu bad', 'token [masked] bad'],
    ['a long hex run', 'sha 0123456789abcdef0123456789abcdef01', 'sha [masked]'],
    ['a long mixed-case base64 run', 'tok QWxhZGRpbjpvcGVuIHNlc2FtZQ9zZXhZ2k3 end', 'tok [masked] end'],
  ])('removes %s', (_what, input, output) => {
    expect(redactText(input, served)).toBe(output);
  });

  it.each([
    ['values too short to search for', 'a short line'],
    ['absolute paths', 'cannot read /run/user/1000/keybroker/keybroker.sock'],
    ['long words without digits', 'the-command-was-not-found-anywhere-on-this-machine'],
  ])('leaves %s alone', (_what, input) => {
    expect(redactText(input, served)).toBe(input);
  });

  it('keeps no copy of a value: only its salted hash', () => {
    const s = new ServedValues();
    s.add(SecretValue.fromString('kb-never-kept-5c'));
    expect(JSON.stringify(Object.entries(s))).not.toContain('kb-never-kept-5c');
    expect(redactText('kb-never-kept-5c', s)).toBe('[redacted]');
  });
});
