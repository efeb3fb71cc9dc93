// setup claude --adopt's translation table: which helper commands become a native source, exactly,
// and which stay the command they are (exec:). Pure: nothing runs.
import { describe, expect, it } from 'vitest';
import { profileNameFor, translateHelper } from '../../src/integration/helper-translation.js';

describe('translateHelper: exact translations', () => {
  it.each([
    ['op read op://Private/Anthropic/credential', 'op://Private/Anthropic/credential'],
    ['op read "op://Private/Anthropic API/credential"', 'op://Private/Anthropic API/credential'],
    ["op read 'op://Work/Claude/section/api key'", 'op://Work/Claude/section/api key'],
    ['op read --no-newline op://Private/Anthropic/credential', 'op://Private/Anthropic/credential'],
    ['op read op://Private/Anthropic/credential -n', 'op://Private/Anthropic/credential'],
    ['/usr/local/bin/op read op://Private/Anthropic/credential', 'op://Private/Anthropic/credential'],
    [
      'op read "op://Private/Anthropic/one-time password?attribute=otp"',
      'op://Private/Anthropic/one-time password?attribute=otp',
    ],
    ['vault kv get -field=api_key secret/anthropic', 'vault://secret/anthropic#api_key'],
    ['vault kv get -field api_key secret/anthropic', 'vault://secret/anthropic#api_key'],
    ['vault kv get --field=api_key secret/anthropic', 'vault://secret/anthropic#api_key'],
    ['vault kv get -mount=secret -field=api_key anthropic', 'vault://secret/anthropic#api_key'],
    ['vault kv get -mount team/kv -field=key app/claude', 'vault://team/kv/app/claude#key'],
    ['vault kv get -field=api_key -version=3 secret/anthropic', 'vault://secret/anthropic?version=3#api_key'],
    ['vault kv get -field=api_key /secret/anthropic/', 'vault://secret/anthropic#api_key'],
    ['vault kv get -field="api key" "secret/my app"', 'vault://secret/my%20app#api%20key'],
    [
      'aws secretsmanager get-secret-value --secret-id prod/anthropic --query SecretString --output text',
      'aws-sm://prod/anthropic',
    ],
    [
      "aws secretsmanager get-secret-value --secret-id=prod/anthropic --output=text --query 'SecretString' --no-cli-pager",
      'aws-sm://prod/anthropic',
    ],
    [
      'aws --region eu-west-1 secretsmanager get-secret-value --secret-id prod/anthropic --query SecretString --output text --version-stage AWSPREVIOUS',
      'aws-sm://prod/anthropic?region=eu-west-1&versionStage=AWSPREVIOUS',
    ],
    [
      'aws secretsmanager get-secret-value --output text --query SecretString --secret-id arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/anthropic-AbCdEf',
      'aws-sm://arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/anthropic-AbCdEf',
    ],
  ])('%s -> %s', (command, source) => {
    expect(translateHelper(command)).toMatchObject({ kind: 'native', source });
  });

  it('carries op --account and aws --profile into the profile as settings blocks', () => {
    expect(translateHelper('op read --account my.1password.com op://Private/Anthropic/credential')).toEqual({
      kind: 'native',
      source: 'op://Private/Anthropic/credential',
      block: { key: 'onepassword', value: { account: 'my.1password.com' } },
    });
    expect(
      translateHelper(
        'aws secretsmanager get-secret-value --profile work --secret-id prod/anthropic --query SecretString --output text',
      ),
    ).toEqual({ kind: 'native', source: 'aws-sm://prod/anthropic', block: { key: 'aws', value: { profile: 'work' } } });
  });
});

describe('translateHelper: everything else stays the command (exec:)', () => {
  it.each([
    // flags that change what is read or printed
    'op read --out-file /tmp/k op://Private/Anthropic/credential',
    'op read op://Private/Anthropic/credential --cache=false',
    'op item get Anthropic --fields credential --reveal',
    'op read',
    'op read op://a/b/c op://a/b/d',
    'op read notareference',
    'vault kv get secret/anthropic',
    'vault kv get -field=api_key -address=https://other:8200 secret/anthropic',
    'vault kv get secret/anthropic -field=api_key',
    'vault kv get -field=api_key -version=latest secret/anthropic',
    'vault kv get -field=api_key -field=org secret/anthropic',
    'vault kv get -field=api_key secret',
    'vault read -field=api_key secret/anthropic',
    'aws secretsmanager get-secret-value --secret-id prod/anthropic',
    'aws secretsmanager get-secret-value --secret-id prod/anthropic --query SecretString --output json',
    'aws secretsmanager get-secret-value --secret-id prod/anthropic --query SecretString --output text --endpoint-url http://localhost:4566',
    'aws ssm get-parameter --name /anthropic --with-decryption --query Parameter.Value --output text',
    // more than one plain command, variables, quoting we do not follow
    'op read op://Private/Anthropic/credential | tr -d "\\n"',
    'OP_ACCOUNT=work op read op://Private/Anthropic/credential',
    'op read "op://Private/$ITEM/credential"',
    'op read op://Private/Anthropic/credential?attribute=otp',
    'sh -c "op read op://Private/Anthropic/credential"',
    'echo sk-ant-literal-key',
    'pass show anthropic',
    '~/bin/get-key',
  ])('%s', (command) => {
    const t = translateHelper(command);
    expect(t).toMatchObject({ kind: 'exec', source: `exec:${command}` });
    expect(t.why).toBeTruthy();
  });

  it('never quotes an argument in its reason (a helper may hold a literal key)', () => {
    for (const command of [
      'echo sk-ant-literal-key-3b1',
      'op read sk-ant-literal-key-3b1',
      'KEY=sk-ant-literal-key-3b1 cmd',
    ])
      expect(translateHelper(command).why).not.toContain('sk-ant');
  });
});

describe('profileNameFor', () => {
  it.each([
    ['op read "op://Private/Anthropic API/credential"', 'anthropic-api'],
    ['vault kv get -field=api_key secret/team/claude', 'claude'],
    ['aws secretsmanager get-secret-value --secret-id prod/anthropic --query SecretString --output text', 'anthropic'],
    ['pass show anthropic', 'adopted'],
    ['vault kv get -field=api_key secret/default', 'adopted'],
  ])('%s -> %s', (command, name) => {
    expect(profileNameFor(translateHelper(command))).toBe(name);
  });
});
