// The one way keybroker rewrites a file it does not own the contents of (Claude Code's settings,
// the keybroker config): a 0600 backup, the original mode, and never over a file that changed
// since it was read, or one that appeared where none was.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/errors.js';
import { replaceFile } from '../../src/integration/file-replace.js';
import { privateTempDir } from '../helpers/daemon.js';

const dir = privateTempDir('kb-replace-');
const NOW = new Date('2026-03-04T05:06:07Z');
const options = (original: string | undefined) => ({ now: NOW, original, maxBytes: 1024 });

describe('replaceFile', () => {
  it('backs up (0600), keeps the mode, and replaces', async () => {
    const file = path.join(dir, 'a.yaml');
    fs.writeFileSync(file, 'old\n', { mode: 0o640 });
    fs.chmodSync(file, 0o640);
    const r = await replaceFile(file, 'new\n', options('old\n'));
    expect(fs.readFileSync(file, 'utf8')).toBe('new\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o640);
    expect(r.backup).toBe(`${file}.keybroker-backup-20260304T050607Z`);
    expect(fs.readFileSync(r.backup!, 'utf8')).toBe('old\n');
    expect(fs.statSync(r.backup!).mode & 0o777).toBe(0o600);
  });

  it('leaves a file that changed since it was read, and writes no backup', async () => {
    const file = path.join(dir, 'b.yaml');
    fs.writeFileSync(file, 'edited meanwhile\n', { mode: 0o600 });
    const err = await replaceFile(file, 'new\n', options('as read\n')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('CONFIG_INVALID');
    expect(fs.readFileSync(file, 'utf8')).toBe('edited meanwhile\n');
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('b.yaml'))).toEqual(['b.yaml']);
  });

  it('creates a missing file 0600, but not over one that appeared meanwhile', async () => {
    const file = path.join(dir, 'new', 'c.yaml');
    const r = await replaceFile(file, 'first\n', options(undefined));
    expect(r.created).toBe(true);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const err = await replaceFile(file, 'second\n', options(undefined)).catch((e: unknown) => e);
    expect((err as BrokerError).code).toBe('CONFIG_INVALID');
    expect(fs.readFileSync(file, 'utf8')).toBe('first\n');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['c.yaml']);
  });
});
