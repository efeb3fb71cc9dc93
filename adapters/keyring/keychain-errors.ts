// The keyring adapter's error translator: a keychain failure (as data, from keychain-worker.ts)
// becomes one BrokerError with a stable code and one line that says what to do. Never a value.
import { BrokerError } from '../../src/errors.js';
import type { KeychainFailure } from './keychain-worker.js';
import type { KeyringRef } from './keyring-uri.js';

export interface FailureContext {
  ref: KeyringRef;
  profile: string;
  platform: NodeJS.Platform;
  /** What was being done, for the message: "read", "store", "remove". */
  action: 'read' | 'store' | 'remove';
  stuckForMs?: number | undefined;
}

/** The keychain's name where the user meets it. */
export function keychainName(platform: NodeJS.Platform): string {
  return platform === 'darwin' ? 'the login keychain' : 'the Secret Service keyring';
}

const VERBS = { read: 'read from', store: 'store in', remove: 'remove from' } as const;

/** The command that tries again, once the cause is fixed. */
function retry(c: FailureContext): string {
  if (c.action === 'store') return `keybroker key set ${c.profile}`;
  if (c.action === 'remove') return `keybroker key delete ${c.profile}`;
  return `keybroker refresh ${c.profile}`;
}

export function translateKeychainFailure(failure: KeychainFailure, c: FailureContext): BrokerError {
  const where = `${c.ref.label}: cannot ${VERBS[c.action]} ${keychainName(c.platform)}`;
  switch (failure) {
    case 'no-library':
      return new BrokerError(
        'UNAVAILABLE',
        `${where}: the keychain library (@napi-rs/keyring) is missing or has no build for ${process.platform}-${process.arch}`,
        { transient: false, status: failure, fix: 'reinstall keybroker, or use a file: source' },
      );
    case 'no-bus':
      return new BrokerError(
        'UNAVAILABLE',
        `${where}: no D-Bus session bus here (DBUS_SESSION_BUS_ADDRESS is unset or dead), so no Secret Service`,
        { transient: false, status: failure, fix: 'run keybroker inside your desktop session, or use a file: source' },
      );
    case 'no-service':
      return new BrokerError('UNAVAILABLE', `${where}: no Secret Service on this session bus`, {
        status: failure,
        fix: "install and start gnome-keyring (or KeePassXC's Secret Service), or use a file: source",
      });
    case 'no-answer':
      return new BrokerError(
        'UNAVAILABLE',
        c.stuckForMs !== undefined
          ? `${where}: an earlier keychain call has waited ${Math.round(c.stuckForMs / 1000)} s (an unlock or access prompt may be open on your screen)`
          : `${where}: the keychain did not answer`,
        {
          status: failure,
          fix:
            c.stuckForMs !== undefined
              ? `answer it, then run: ${retry(c)}`
              : `check that its service runs (gnome-keyring-daemon, or the login keychain), then run: ${retry(c)}`,
        },
      );
    case 'locked':
      return new BrokerError(
        'AUTH_REQUIRED',
        c.platform === 'darwin'
          ? `${where}: the keychain is locked or access was refused`
          : `${where}: the keyring is locked`,
        {
          status: failure,
          fix:
            c.platform === 'darwin'
              ? `unlock it (security unlock-keychain) and allow access when macOS asks, then run: ${retry(c)}`
              : `unlock your login keyring (log in to the desktop, or open Passwords and Keys), then run: ${retry(c)}`,
        },
      );
    case 'ambiguous':
      return new BrokerError(
        'SOURCE_ERROR',
        `${where}: more than one entry has service "${c.ref.service}" and account "${c.ref.account}"`,
        {
          transient: false,
          status: failure,
          fix: `delete the extra ones (seahorse, or secret-tool clear), then run: ${retry(c)}`,
        },
      );
    case 'failed':
      return new BrokerError('SOURCE_ERROR', `${where}: the keychain reported an unexpected error`, {
        status: failure,
        fix: "its own words are in the daemon's log at --log-level debug",
      });
  }
}

/** A missing entry: NOT_FOUND, with the command that stores it. */
export function notFoundError(c: Pick<FailureContext, 'ref' | 'profile' | 'platform'>): BrokerError {
  const entry = `no entry for service "${c.ref.service}" account "${c.ref.account}" in ${keychainName(c.platform)}`;
  const other =
    c.platform === 'darwin'
      ? `security add-generic-password -s '${c.ref.service}' -a '${c.ref.account}' -w`
      : `secret-tool store --label='${c.ref.service}' service '${c.ref.service}' username '${c.ref.account}'`;
  return new BrokerError('NOT_FOUND', `${c.ref.label}: ${entry}`, {
    fix: c.ref.own
      ? `store the key with: keybroker key set ${c.profile}`
      : `store it with: keybroker key set ${c.profile} (or: ${other})`,
  });
}
