// Every relative link in README.md, CHANGELOG.md and docs/ leads somewhere: the file (or folder)
// exists, and a #fragment names a heading of the target page, slugged the way GitHub renders it.
// The manual was split into many pages and every branch now writes into them, so a renamed
// heading or a moved page must fail here rather than on a reader.
import fs from 'node:fs';
import path from 'node:path';
import GithubSlugger from 'github-slugger';
import MarkdownIt from 'markdown-it';
import { describe, expect, it } from 'vitest';
import { privateTempDir } from '../helpers/cleanup.js';

const root = path.resolve(import.meta.dirname, '..', '..');
const md = new MarkdownIt();

interface Page {
  anchors: Set<string>;
  links: { href: string; line: number }[];
}

function readPage(file: string): Page {
  const tokens = md.parse(fs.readFileSync(file, 'utf8'), {});
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  const links: Page['links'] = [];
  tokens.forEach((token, i) => {
    if (token.type !== 'inline') return;
    const children = token.children ?? [];
    if (tokens[i - 1]?.type === 'heading_open') {
      // GitHub slugs the heading's text content: code spans keep their text, markup goes.
      const text = children
        .filter((c) => c.type === 'text' || c.type === 'code_inline')
        .map((c) => c.content)
        .join('');
      anchors.add(slugger.slug(text));
    }
    // The inline token spans its whole paragraph or table cell; count line breaks to the link.
    // A table cell's inline token has no line map of its own: take the nearest one before it.
    let at = i;
    while (at > 0 && !tokens[at]!.map) at -= 1;
    let line = (tokens[at]!.map?.[0] ?? 0) + 1;
    for (const child of children) {
      if (child.type === 'softbreak' || child.type === 'hardbreak') line += 1;
      const href = child.type === 'link_open' ? child.attrGet('href') : null;
      if (href !== null) links.push({ href, line });
    }
  });
  return { anchors, links };
}

/** Problems as `file:line: link: what is wrong`, relative to `base`; empty when every link resolves. */
export function brokenLinks(base: string, files: string[]): string[] {
  const pages = new Map<string, Page>();
  const page = (file: string): Page => {
    let p = pages.get(file);
    if (!p) pages.set(file, (p = readPage(file)));
    return p;
  };
  const problems: string[] = [];
  for (const file of files) {
    for (const { href, line } of page(file).links) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // https:, mailto: … are not ours to check
      const where = `${path.relative(base, file)}:${line}: ${href}`;
      const hashAt = href.indexOf('#');
      const target = hashAt === -1 ? href : href.slice(0, hashAt);
      const fragment = hashAt === -1 ? '' : decodeURIComponent(href.slice(hashAt + 1));
      const targetFile = target === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(target));
      if (!fs.existsSync(targetFile)) {
        problems.push(`${where}: no such file ${path.relative(base, targetFile)}`);
        continue;
      }
      if (fragment === '') continue;
      if (!targetFile.endsWith('.md') || !fs.statSync(targetFile).isFile()) {
        problems.push(`${where}: a #fragment on something that is not a markdown page`);
      } else if (!page(targetFile).anchors.has(fragment)) {
        problems.push(`${where}: ${path.relative(base, targetFile)} has no heading #${fragment}`);
      }
    }
  }
  return problems;
}

/**
 * Pointers into the docs written in source text — help, messages, the starter config, comments:
 * `docs/PAGE.md` or `README.md`, with an optional `#anchor`, relative to the repository root (the
 * docs ship in the package beside dist/). Problems as `file:line: pointer: what is wrong`.
 */
export function brokenPointers(base: string, files: string[]): string[] {
  const problems: string[] = [];
  const anchors = new Map<string, Set<string>>();
  for (const file of files) {
    fs.readFileSync(file, 'utf8')
      .split('\n')
      .forEach((text, i) => {
        // Prose that names the README or a section can be neither checked nor followed.
        for (const m of text.matchAll(/\b(?:the|keybroker's) README\b(?!\.md)|\bREADME's "/g))
          problems.push(
            `${path.relative(base, file)}:${i + 1}: "${m[0]}": not a pointer that resolves — write docs/PAGE.md#anchor or README.md#anchor`,
          );
        for (const m of text.matchAll(/(?<![\w/.-])((?:docs\/[\w/-]+|README)\.md)(?:#([a-z0-9][a-z0-9-]*))?/g)) {
          const where = `${path.relative(base, file)}:${i + 1}: ${m[0]}`;
          const target = path.join(base, m[1]!);
          if (!fs.existsSync(target)) {
            problems.push(`${where}: no such file ${m[1]}`);
            continue;
          }
          if (m[2] === undefined) continue;
          if (!anchors.has(target)) anchors.set(target, readPage(target).anchors);
          if (!anchors.get(target)!.has(m[2])) problems.push(`${where}: ${m[1]} has no heading #${m[2]}`);
        }
      });
  }
  return problems;
}

/** Every file whose text may point into the docs: the source, the unit templates, the scripts. */
function sourceFiles(): string[] {
  const under = (dir: string, ext: RegExp): string[] =>
    fs
      .readdirSync(path.join(root, dir), { recursive: true, encoding: 'utf8' })
      .filter((f) => ext.test(f))
      .map((f) => path.join(root, dir, f));
  return [
    ...under('src', /\.(ts|c|h)$/),
    ...under('adapters', /\.ts$/),
    ...under('scripts', /\.mjs$/),
    ...under('systemd', /\.(service|socket)$/),
    ...under('launchd', /\.plist$/),
  ].sort();
}

function markdownFiles(): string[] {
  const docs = fs
    .readdirSync(path.join(root, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join(root, 'docs', f));
  const top = ['README.md', 'CHANGELOG.md'].map((f) => path.join(root, f)).filter((f) => fs.existsSync(f));
  return [...top, ...docs].sort();
}

describe('documentation links', () => {
  it('every relative link in README.md, CHANGELOG.md and docs/ resolves, #anchors included', () => {
    const files = markdownFiles();
    expect(files.map((f) => path.relative(root, f))).toContain('docs/README.md');
    expect(brokenLinks(root, files)).toEqual([]);
  });

  it('every pointer into the docs in the source (help, messages, starter config) resolves, #anchors included', () => {
    const files = sourceFiles();
    expect(files.map((f) => path.relative(root, f))).toContain('src/config/starter.ts');
    expect(brokenPointers(root, files)).toEqual([]);
  });

  it('the README links to every page under docs/, directly or through docs/README.md', () => {
    const reachable = new Set<string>();
    const visit = (file: string): void => {
      if (reachable.has(file) || !file.endsWith('.md') || !fs.existsSync(file)) return;
      reachable.add(file);
      for (const { href } of readPage(file).links) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue;
        const target = href.split('#')[0]!;
        if (target) visit(path.resolve(path.dirname(file), decodeURIComponent(target)));
      }
    };
    visit(path.join(root, 'README.md'));
    const unreachable = markdownFiles().filter((f) => f.includes(`${path.sep}docs${path.sep}`) && !reachable.has(f));
    expect(unreachable.map((f) => path.relative(root, f))).toEqual([]);
  });

  describe('the checker itself', () => {
    const dir = privateTempDir('kb-links-');
    const write = (name: string, text: string): string => {
      const file = path.join(dir, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
      return file;
    };

    it('accepts good links, GitHub-style anchors and links inside code', () => {
      const a = write(
        'a.md',
        [
          '# Page A',
          '## `keybroker-shim [--refresh] [PROFILE]`',
          '## Key rejection (401)',
          '## Key rejection (401)',
          'See [b](sub/b.md#claude-codes-other-helpers), [self](#key-rejection-401-1),',
          '[shim](#keybroker-shim---refresh-profile), [folder](sub/) and [web](https://example.com/x#y).',
          '`[not a link](missing.md)`',
          '```',
          '[nor this](missing.md)',
          '```',
        ].join('\n'),
      );
      write('sub/b.md', "# B\n## Claude Code's other helpers\n[back](../a.md#page-a)\n");
      expect(brokenLinks(dir, [a, path.join(dir, 'sub/b.md')])).toEqual([]);
    });

    it('checks pointers in source text, and only those shaped as one', () => {
      write('docs/page.md', '# Page\n## Exit status\n');
      write('README.md', '# Top\n');
      const src = write(
        'src/x.ts',
        [
          "const a = 'see docs/page.md#exit-status and README.md';",
          "const b = 'see docs/page.md#no-such and docs/gone.md';",
          "const c = 'test/fuzz/README.md is not a docs pointer';",
          "const d = 'see the README for the rest';",
        ].join('\n'),
      );
      expect(brokenPointers(dir, [src])).toEqual([
        'src/x.ts:2: docs/page.md#no-such: docs/page.md has no heading #no-such',
        'src/x.ts:2: docs/gone.md: no such file docs/gone.md',
        'src/x.ts:4: "the README": not a pointer that resolves — write docs/PAGE.md#anchor or README.md#anchor',
      ]);
    });

    it('reports a missing file, a missing anchor and an anchor on a folder, with their lines', () => {
      const c = write(
        'c.md',
        [
          '# C',
          '',
          '[gone](nowhere.md)',
          '[bad anchor](sub/b.md#no-such-heading)',
          '[here](#c-missing) [dir](sub/#x)',
          '',
          '| a | b |',
          '| --- | --- |',
          '| 1 | [ok](#c) |',
          '| 2 | [cell](#in-a-table) |',
        ].join('\n'),
      );
      write('sub/b.md', '# B\n');
      expect(brokenLinks(dir, [c])).toEqual([
        'c.md:3: nowhere.md: no such file nowhere.md',
        'c.md:4: sub/b.md#no-such-heading: sub/b.md has no heading #no-such-heading',
        'c.md:5: #c-missing: c.md has no heading #c-missing',
        'c.md:5: sub/#x: a #fragment on something that is not a markdown page',
        'c.md:10: #in-a-table: c.md has no heading #in-a-table',
      ]);
    });
  });
});
