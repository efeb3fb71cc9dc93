// keyring:NAME and keyring://SERVICE/ACCOUNT, parsed offline at config load.
//
// keyring:NAME is keybroker's own entry: service "keybroker", account NAME (what `keybroker key set`
// writes). keyring://SERVICE/ACCOUNT is an entry another tool wrote: on Linux the Secret Service
// item with attributes service=SERVICE and username=ACCOUNT (`secret-tool store … service SERVICE
// username ACCOUNT`), on macOS the generic password with -s SERVICE -a ACCOUNT. SERVICE is what
// comes before the first "/", ACCOUNT the rest; both are percent-decoded, so a "/" inside a service
// is written %2F.
import { BrokerError } from '../../src/errors.js';

export interface KeyringRef {
  service: string;
  account: string;
  /** The URI in a canonical form, for logs, status and messages (never a value). */
  label: string;
  /** keyring:NAME (keybroker's own entry) rather than keyring://SERVICE/ACCOUNT. */
  own: boolean;
}

/** The service of every keyring:NAME entry. */
export const KEYBROKER_SERVICE = 'keybroker';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const MAX_PART_CHARS = 256;
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
const EXAMPLES = 'keyring:default, or keyring://SERVICE/ACCOUNT for an entry another tool wrote';

export function parseKeyringUri(uri: string): KeyringRef {
  // The raw text is never echoed back: whatever was pasted here might be a key.
  if (!uri.startsWith('keyring:')) throw invalid(`write a keyring source as ${EXAMPLES}`);
  const rest = uri.slice('keyring:'.length);
  if (!rest.startsWith('//')) {
    if (!NAME.test(rest)) {
      throw invalid(
        `keyring:NAME takes a name of letters, digits and . _ @ + - (at most 128, starting with a letter or digit), e.g. ${EXAMPLES}`,
      );
    }
    return { service: KEYBROKER_SERVICE, account: rest, label: `keyring:${rest}`, own: true };
  }
  const body = rest.slice(2);
  const slash = body.indexOf('/');
  if (slash <= 0 || slash === body.length - 1) {
    throw invalid(`keyring://SERVICE/ACCOUNT needs both parts, e.g. keyring://openai/ada (${EXAMPLES})`);
  }
  const service = decode(body.slice(0, slash), 'SERVICE');
  const account = decode(body.slice(slash + 1), 'ACCOUNT');
  return { service, account, label: `keyring://${encode(service)}/${encode(account)}`, own: false };
}

function decode(part: string, what: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(part);
  } catch {
    throw invalid(`the ${what} part has a malformed %-escape (write a "%" as %25)`);
  }
  if (decoded.length === 0 || decoded.length > MAX_PART_CHARS) {
    throw invalid(`the ${what} part must be 1 to ${MAX_PART_CHARS} characters`);
  }
  if (CONTROL.test(decoded)) throw invalid(`the ${what} part must not contain control characters`);
  return decoded;
}

/** Percent-encode what would not read back the same, keeping the characters services use (: @). */
function encode(part: string): string {
  return encodeURIComponent(part).replace(/%3A/gi, ':').replace(/%40/gi, '@');
}

function invalid(message: string): BrokerError {
  return new BrokerError('CONFIG_INVALID', message);
}
