// keyring: against a real Secret Service (gnome-keyring-daemon on a private session bus), with
// entries written and read back by secret-tool, the Secret Service's own command-line client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdapter } from '../../adapters/keyring/keyring-adapter.js';
import { parseKeyringUri } from '../../adapters/keyring/keyring-uri.js';
import type { Adapter } from '../../src/adapter.js';
import { BrokerError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { SecretValue } from '../../src/secret.js';
import { describeAdapterContract, fetchContext } from '../contract/adapter-contract.js';
import { privateTempDir } from '../helpers/daemon.js';
import { SECRET_SERVICE_SKIP, startSecretService, type SecretService } from '../helpers/secret-service.js';

const log = createLogger({ level: 'silent' });
const dir = privateTempDir('kb-keyring-');
let service: SecretService | undefined;

/**
 * The one Secret Service of this file. The keychain library reads the bus address from the
 * process environment (and libdbus keeps the first one it saw), so it is set here, once.
 */
async function secretService(): Promise<SecretService> {
  if (!service) {
    service = await startSecretService(dir);
    process.env.DBUS_SESSION_BUS_ADDRESS = service.address;
  }
  return service;
}

describe.skipIf(SECRET_SERVICE_SKIP)('keyring: against gnome-keyring', () => {
  describeAdapterContract('keyring', async () => {
    const ss = await secretService();
    return {
      adapter: createAdapter({ settings: undefined, env: process.env, log }),
      uriFor: (name) => `keyring://kb-contract/${name}`,
      put: async (name, value) => {
        const stored = await ss.secretTool(
          ['store', '--label=kb contract', 'service', 'kb-contract', 'username', name],
          value,
        );
        expect(stored.code).toBe(0);
      },
      missingUri: 'keyring://kb-contract/missing',
      invalidUris: [
        'keyring:',
        'keyring:-dash-first',
        'keyring:has space',
        'keyring://',
        'keyring://only-service',
        'keyring://only-service/',
        'keyring:///account',
        'keyring://bad%ZZescape/a',
        'keyring://svc/a%0Ab',
      ],
    };
  });

  describe('entries and values', () => {
    let adapter: Adapter;
    const parse = (uri: string, profile = 'work') => adapter.parse(uri, { overrides: undefined, profile });
    const fetchError = async (uri: string, profile = 'work'): Promise<BrokerError> => {
      const err = await adapter.fetch(await parse(uri, profile), fetchContext({ profile })).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(BrokerError);
      return err as BrokerError;
    };
    beforeAll(async () => {
      await secretService();
      adapter = createAdapter({ settings: undefined, env: process.env, log });
    });
    afterAll(() => adapter.close());

    it('reads an entry secret-tool stored, trimming the one newline `echo … |` leaves', async () => {
      const ss = await secretService();
      await ss.secretTool(['store', '--label=gh', 'service', 'gh:github.com', 'username', 'ada'], 'ghp-from-echo\n');
      const ref = await parse('keyring://gh:github.com/ada');
      expect((await adapter.fetch(ref, fetchContext())).value.reveal()).toBe('ghp-from-echo');
      // The same entry, written the percent-encoded way.
      const encoded = await parse('keyring://gh%3Agithub.com/ada');
      expect((await adapter.fetch(encoded, fetchContext())).value.reveal()).toBe('ghp-from-echo');
    });

    it('keyring:NAME is service "keybroker", account NAME: what store() writes, secret-tool lookup reads', async () => {
      const ss = await secretService();
      const ref = await parse('keyring:stored');
      await adapter.store!(ref, SecretValue.fromString('sk-stored-123'), fetchContext());
      const lookup = await ss.secretTool(['lookup', 'service', 'keybroker', 'username', 'stored']);
      expect(lookup).toMatchObject({ code: 0, stdout: 'sk-stored-123' });
      expect((await adapter.fetch(ref, fetchContext())).value.reveal()).toBe('sk-stored-123');
      // Replaced, not duplicated: one entry still answers the lookup.
      await adapter.store!(ref, SecretValue.fromString('sk-stored-456'), fetchContext());
      expect((await adapter.fetch(ref, fetchContext())).value.reveal()).toBe('sk-stored-456');
      const search = await ss.secretTool(['search', '--all', 'service', 'keybroker', 'username', 'stored']);
      expect(search.stdout.match(/^secret = /gm)).toHaveLength(1);
    });

    it('remove() deletes the entry (true), then finds none (false); a read then says how to store it', async () => {
      const ss = await secretService();
      const ref = await parse('keyring:removed');
      await adapter.store!(ref, SecretValue.fromString('sk-to-remove'), fetchContext());
      expect(await adapter.remove!(ref, fetchContext())).toBe(true);
      expect(await adapter.remove!(ref, fetchContext())).toBe(false);
      expect((await ss.secretTool(['lookup', 'service', 'keybroker', 'username', 'removed'])).code).not.toBe(0);
      const err = await fetchError('keyring:removed', 'work');
      expect(err.code).toBe('NOT_FOUND');
      expect(err.fix).toContain('keybroker key set work');
    });

    it('two entries that both match are refused (SOURCE_ERROR), not one picked at random', async () => {
      const ss = await secretService();
      for (const n of ['1', '2'])
        await ss.secretTool(
          ['store', `--label=dup ${n}`, 'service', 'dup', 'username', 'ada', 'extra', n],
          `sk-dup-${n}`,
        );
      const err = await fetchError('keyring://dup/ada');
      expect(err.code).toBe('SOURCE_ERROR');
      expect(err.message).not.toContain('sk-dup');
    });

    it('describes an entry by its URI, never its value', async () => {
      const ref = await parse('keyring://gh:github.com/ada');
      expect(adapter.describe(ref)).toBe('keyring://gh:github.com/ada');
      expect(adapter.describe(await parse('keyring:default'))).toBe('keyring:default');
    });
  });
});

describe('keyring URIs', () => {
  it("keyring:NAME is keybroker's entry; keyring://SERVICE/ACCOUNT another tool's, percent-decoded", () => {
    expect(parseKeyringUri('keyring:default')).toMatchObject({ service: 'keybroker', account: 'default', own: true });
    expect(parseKeyringUri('keyring://openai/ada@example.com')).toMatchObject({
      service: 'openai',
      account: 'ada@example.com',
      own: false,
    });
    expect(parseKeyringUri('keyring://a%2Fb/c/d')).toMatchObject({ service: 'a/b', account: 'c/d' });
  });

  it('never echoes a refused URI (it may be a pasted key)', () => {
    const pasted = 'keyring:sk-ant-api03 secret-looking value';
    const err = (() => {
      try {
        parseKeyringUri(pasted);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('CONFIG_INVALID');
    expect((err as BrokerError).message).not.toContain('sk-ant');
  });
});
