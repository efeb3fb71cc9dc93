// op:// secret references: validated offline with the SDK's own Secrets.validateSecretReference,
// then split into vault / item / section / field so messages can name what was not found.
import { BrokerError } from '../../src/errors.js';
import type { Sdk } from './client-factory.js';

export interface ReferenceParts {
  vault: string;
  item: string;
  section?: string;
  field: string;
  /** `attribute=otp`, `ssh-format=openssh`, … */
  query?: string;
}

/** A reference that long is a mistake (or a pasted blob), not a vault/item/field path. */
const MAX_REFERENCE_LENGTH = 1024;
export const REFERENCE_FORM = 'op://<vault>/<item>[/<section>]/<field>[?attribute=otp]';

/**
 * Validate with the SDK and split. Messages never quote the reference: a key pasted where the
 * field name belongs is still a key.
 */
export function validateReference(sdk: Sdk, reference: string): ReferenceParts {
  const invalid = (reason: string): BrokerError =>
    // The config error names the profile and its line; the message says what is wrong.
    new BrokerError(
      'CONFIG_INVALID',
      `not a valid 1Password secret reference: ${reason}; write it as ${REFERENCE_FORM}`,
    );
  if (reference.length > MAX_REFERENCE_LENGTH) throw invalid(`longer than ${MAX_REFERENCE_LENGTH} characters`);
  try {
    sdk.Secrets.validateSecretReference(reference);
  } catch (err) {
    throw invalid(validationReason(err));
  }
  const parts = splitReference(reference);
  // The SDK accepts empty segments (op://vault//field), which can never name a field.
  if (!parts) throw invalid('it has an empty vault, item, section or field name');
  return parts;
}

export function splitReference(reference: string): ReferenceParts | undefined {
  if (!reference.startsWith('op://')) return undefined;
  const rest = reference.slice('op://'.length);
  const q = rest.indexOf('?');
  const pathPart = q === -1 ? rest : rest.slice(0, q);
  const segments = pathPart.split('/');
  if (segments.some((s) => s.length === 0)) return undefined;
  let parts: ReferenceParts;
  if (segments.length === 3) parts = { vault: segments[0]!, item: segments[1]!, field: segments[2]! };
  else if (segments.length === 4)
    parts = { vault: segments[0]!, item: segments[1]!, section: segments[2]!, field: segments[3]! };
  else return undefined;
  if (q !== -1) parts.query = rest.slice(q + 1);
  return parts;
}

/**
 * The SDK throws the core's error as a JSON string ({"name":"ParsingSecretReference",…}); map its
 * known messages to our own words rather than pass SDK text through.
 */
function validationReason(err: unknown): string {
  let message = '';
  const text = typeof err === 'string' ? err : err instanceof Error ? err.message : '';
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && typeof (parsed as { message?: unknown }).message === 'string')
      message = (parsed as { message: string }).message;
  } catch {
    message = text;
  }
  if (/not prefixed with/.test(message)) return 'it must start with op://';
  if (/invalid format/.test(message))
    return 'it needs a vault, an item, an optional section and a field, separated by /';
  if (/invalid character/.test(message))
    return 'it contains a character references cannot hold (use letters, digits, spaces, _, . and -, or the vault/item/field ID instead of its name)';
  if (/query parameter key/.test(message))
    return 'unknown query parameter (the SDK supports ?attribute=otp and ?ssh-format=openssh)';
  if (/query parameter value/.test(message))
    return 'unsupported query parameter value (the SDK supports ?attribute=otp, ?attribute=totp and ?ssh-format=openssh)';
  return 'the 1Password SDK rejected it';
}
