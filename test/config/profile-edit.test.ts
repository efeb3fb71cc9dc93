// Writing one profile into a config's text (init, setup claude --adopt): a new config is the
// starter with that profile; an existing one keeps every line and comment; a profile of yours
// that reads another source is replaced only when asked. Each result must load.
import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { parseConfigText } from '../../src/config/load.js';
import { configWithProfile } from '../../src/config/profile-edit.js';
import { starterConfig } from '../../src/config/starter.js';

const MINE = 'defaults:\n  ttl: 1h   # mine\n\nprofiles:\n  # the work key\n  work:\n    source: env:WORK_KEY\n';

describe('configWithProfile', () => {
  it('a new config: the starter, with the profile first and the starter comments kept', () => {
    const text = configWithProfile(
      undefined,
      'default',
      { source: 'exec:op read "op://Private/A key/credential"' },
      {
        replace: false,
        comment: 'written by keybroker init',
      },
    );
    expect(parseConfigText(text, 'x.yaml').profiles).toEqual({
      default: { source: 'exec:op read "op://Private/A key/credential"' },
    });
    expect(text).toContain('  # written by keybroker init\n  default:\n');
    expect(text).toContain('# keybroker configuration');
  });

  it('adds a profile to an existing config, keeping every line and comment as written', () => {
    const text = configWithProfile(
      MINE,
      'default',
      {
        source: 'op://Private/Anthropic/credential',
        block: { key: 'onepassword', value: { account: 'my.1password.com' } },
      },
      { replace: false, comment: 'adopted' },
    );
    expect(text.startsWith(MINE)).toBe(true);
    expect(text.slice(MINE.length)).toBe(
      '  # adopted\n  default:\n    source: op://Private/Anthropic/credential\n    onepassword:\n      account: my.1password.com\n',
    );
    expect(parseConfigText(text, 'x.yaml').profiles.default).toMatchObject({
      source: 'op://Private/Anthropic/credential',
    });
  });

  it('the same source again changes nothing; another source is refused (USAGE) unless replace', () => {
    expect(configWithProfile(MINE, 'work', { source: 'env:WORK_KEY' }, { replace: false })).toBe(MINE);
    const err = (() => {
      try {
        return configWithProfile(MINE, 'work', { source: 'keyring:work' }, { replace: false });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('USAGE');
    const replaced = configWithProfile(MINE, 'work', { source: 'keyring:work' }, { replace: true });
    expect(parseConfigText(replaced, 'x.yaml').profiles.work).toEqual({ source: 'keyring:work' });
    expect(replaced).toContain('ttl: 1h   # mine');
  });

  it('a config without profiles: gets one, and a $ in a command is written as it is', () => {
    const text = configWithProfile(
      'defaults:\n  ttl: 1h\n',
      'default',
      { source: "exec:printf %s '$&x'" },
      { replace: false },
    );
    expect(parseConfigText(text, 'x.yaml').profiles.default).toEqual({ source: "exec:printf %s '$&x'" });
    const fresh = configWithProfile(undefined, 'default', { source: "exec:printf %s '$&x'" }, { replace: false });
    expect(parseConfigText(fresh, 'x.yaml').profiles.default).toEqual({ source: "exec:printf %s '$&x'" });
  });

  it("a new profile goes after the last one, above the starter's commented examples", () => {
    const starter = starterConfig({ kind: 'keyring', what: 'a keychain' });
    const text = configWithProfile(starter, 'work', { source: 'env:WORK_KEY' }, { replace: false });
    const at = starter.indexOf('    source: keyring:default\n') + '    source: keyring:default\n'.length;
    expect(text).toBe(`${starter.slice(0, at)}  work:\n    source: env:WORK_KEY\n${starter.slice(at)}`);
    expect(Object.keys(parseConfigText(text, 'x.yaml').profiles)).toEqual(['default', 'work']);
  });

  it('replacing a profile changes its lines only', () => {
    const three =
      'profiles:\n  a:\n    source: env:A   # a\n  b:\n    source: env:B\n    ttl: 1h\n\n  # c next\n  c: {source: env:C}\n';
    const text = configWithProfile(three, 'b', { source: 'keyring:b' }, { replace: true });
    expect(text).toBe(
      'profiles:\n  a:\n    source: env:A   # a\n  b:\n    source: keyring:b\n\n  # c next\n  c: {source: env:C}\n',
    );
  });
});
