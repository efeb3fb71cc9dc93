// @ts-check
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ROOT = path.dirname(fileURLToPath(import.meta.url));

// ---- Boundaries (STYLE.md, "Shape of the code") ------------------------------------------------
// Dependencies point one way: cli → daemon → cache → adapter interface. The shim imports only node
// built-ins, src/protocol/ and src/client/; src/protocol/ (the wire protocol) imports nothing of ours
// outside itself, and src/client/ (socket path and checks, the client, autostart) only src/protocol/; adapters import
// only src/adapter.ts, src/errors.ts and src/secret.ts (never another adapter); integration/ uses
// the protocol client and config, not the cache's internals. A boundary written in a comment is
// written here too, so lint fails on an import that crosses it.
//
// Each zone lists what it may import besides its own folder (paths from the repo root; a folder
// ends with "/"). `nodeOnly`: no npm packages either (the shim's bundle, and protocol/ inside it).
const TOP_LEVEL = [
  'src/adapter.ts',
  'src/adapter-pool.ts',
  'src/aws-settings.ts',
  'src/checked-file.ts',
  'src/clock.ts',
  'src/did-you-mean.ts',
  'src/duration.ts',
  'src/errors.ts',
  'src/log.ts',
  'src/package-root.ts',
  'src/private-dir.ts',
  'src/secret.ts',
  'src/version.ts',
];
const CORE = ['src/adapter.ts', 'src/errors.ts', 'src/secret.ts'];
/** @type {Record<string, { allow: string[]; nodeOnly?: boolean; why: string }>} */
const ZONES = {
  'src/shim/': {
    allow: ['src/protocol/', 'src/client/'],
    nodeOnly: true,
    why: 'the shim imports only node: built-ins, src/protocol/ and src/client/ (start-up time is the product)',
  },
  'src/client/': {
    allow: ['src/protocol/'],
    nodeOnly: true,
    why: 'src/client/ imports only src/protocol/ (the shim bundles it)',
  },
  'src/protocol/': {
    allow: [],
    nodeOnly: true,
    why: 'src/protocol/ imports nothing of ours outside itself (the shim bundles it)',
  },
  'src/cache/': {
    allow: [
      ...CORE,
      'src/adapter-pool.ts',
      'src/checked-file.ts',
      'src/clock.ts',
      'src/duration.ts',
      'src/log.ts',
      'src/protocol/',
      'src/client/',
      'src/config/',
    ],
    why: 'the cache gets adapters through the interface (src/adapter.ts, src/adapter-pool.ts), never adapters/ or the daemon, CLI or integration',
  },
  'src/config/': {
    allow: [
      ...CORE,
      'src/checked-file.ts',
      'src/did-you-mean.ts',
      'src/duration.ts',
      'src/protocol/',
      'src/client/',
      'adapters/registry.ts',
    ],
    why: 'config reads and validates the file; it knows adapters only through the registry',
  },
  'src/audit/': {
    // The trail keeps its directory private with the socket directory's check (src/private-dir.ts).
    allow: [
      ...CORE,
      'src/checked-file.ts',
      'src/duration.ts',
      'src/log.ts',
      'src/protocol/',
      'src/client/',
      'src/config/',
      'src/private-dir.ts',
    ],
    why: 'the audit trail sits beside the daemon: no cache, CLI, integration or adapters',
  },
  'src/daemon/': {
    allow: [
      ...TOP_LEVEL,
      'src/protocol/',
      'src/client/',
      'src/config/',
      'src/cache/',
      'src/audit/',
      'src/telemetry/',
      'adapters/registry.ts',
    ],
    why: 'the daemon uses the cache, config and protocol; never the CLI, integration, shim or an adapter directly (the registry loads them)',
  },
  'src/telemetry/': {
    // The daemon hands it what to report (records, statuses, a way to read a profile): it never
    // reaches into the cache, and only otel-export.ts imports the OpenTelemetry SDK.
    allow: [...CORE, 'src/log.ts', 'src/version.ts', 'src/protocol/', 'src/config/', 'src/audit/'],
    why: 'telemetry reports what the daemon hands it: no cache, daemon, CLI, integration or adapters',
  },
  'src/integration/': {
    allow: [
      'src/adapter-pool.ts',
      'src/checked-file.ts',
      'src/duration.ts',
      'src/errors.ts',
      'src/log.ts',
      'src/package-root.ts',
      'src/secret.ts',
      'src/version.ts',
      'src/protocol/',
      'src/client/',
      'src/config/',
      'src/audit/',
      'adapters/registry.ts',
    ],
    why: 'integration/ may use the protocol client and config, not the cache or daemon internals',
  },
  'src/cli/': {
    allow: [
      ...TOP_LEVEL,
      'src/protocol/',
      'src/client/',
      'src/config/',
      'src/cache/',
      'src/daemon/',
      'src/audit/',
      'src/integration/',
      'adapters/registry.ts',
    ],
    why: 'the CLI sits on top; it never imports the shim or an adapter directly',
  },
  'src/': {
    allow: [...TOP_LEVEL, 'src/protocol/', 'src/client/'],
    why: 'the adapter interface and core helpers (src/*.ts) sit below everything else: they import only each other and src/protocol/ (no folder of ours, so no folder cycle)',
  },
  'adapters/': {
    allow: ['src/adapter.ts'],
    why: 'the registry knows only the adapter interface and the adapter folders it loads',
  },
  'adapters/*/': {
    allow: CORE,
    why: 'an adapter imports only src/adapter.ts, src/errors.ts and src/secret.ts (and its own folder), never another adapter',
  },
};

/**
 * No folder cycle (#18): the zones' allow lists must form a graph without cycles, so that lint,
 * which holds every import to its zone's list, also keeps the folders from importing each other
 * round in a circle. A file named in a list belongs to its folder's zone; the registry's zone
 * (adapters/) reaches the adapter folders below it.
 */
function assertNoZoneCycle() {
  const zoneOfTarget = (target) => {
    if (target.startsWith('adapters/')) return target.split('/').length > 2 ? 'adapters/*/' : 'adapters/';
    const parts = target.split('/');
    return parts.length > 2 ? `${parts[0]}/${parts[1]}/` : 'src/';
  };
  const edges = Object.fromEntries(
    Object.entries(ZONES).map(([zone, { allow }]) => [
      zone,
      [...new Set(allow.map(zoneOfTarget))].filter((to) => to !== zone),
    ]),
  );
  edges['adapters/'].push('adapters/*/');
  const state = {};
  const visit = (zone, trail) => {
    if (state[zone] === 'done') return;
    if (state[zone] === 'open')
      throw new Error(`eslint.config.js: the zones import in a circle: ${[...trail, zone].join(' → ')}`);
    state[zone] = 'open';
    for (const to of edges[zone]) visit(to, [...trail, zone]);
    state[zone] = 'done';
  };
  for (const zone of Object.keys(ZONES)) visit(zone, []);
}
assertNoZoneCycle();

/** The zone a directory (repo-relative, posix) belongs to, and that zone's own folder. */
function zoneOf(dir) {
  if (dir === 'src') return { zone: 'src/', own: undefined };
  // The registry's job is to load every adapter folder below it (with import()).
  if (dir === 'adapters') return { zone: 'adapters/', own: 'adapters' };
  const [top, second] = dir.split('/');
  if (top === 'adapters') return { zone: 'adapters/*/', own: `adapters/${second}` };
  return { zone: `${top}/${second}/`, own: `${top}/${second}` };
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A relative specifier from `dir` to `target`, as written in an import (./x or ../x). */
function relativeSpec(dir, target) {
  const rel = path.posix.relative(dir, target);
  return rel.startsWith('..') ? rel : `./${rel}`;
}

/** Regexes for the relative specifiers a file in `dir` may use. */
function allowedSpecs(dir) {
  const { zone, own } = zoneOf(dir);
  const specs = [];
  if (own) {
    specs.push('\\./'); // anything below this directory stays inside the zone
    if (dir !== own) specs.push(`${escape(relativeSpec(dir, own))}/`);
  } else {
    specs.push('\\./[^/]+$'); // the files beside it, not the folders below it
  }
  for (const target of ZONES[zone].allow) {
    if (target.endsWith('/')) specs.push(`${escape(relativeSpec(dir, target.slice(0, -1)))}/`);
    else specs.push(`${escape(relativeSpec(dir, target.replace(/\.ts$/, '.js')))}$`);
  }
  return specs;
}

function directories(top) {
  const out = [top];
  for (const entry of fs.readdirSync(path.join(ROOT, top), { withFileTypes: true })) {
    if (entry.isDirectory()) out.push(...directories(`${top}/${entry.name}`));
  }
  return out;
}

const boundaryConfigs = [...directories('src'), ...directories('adapters')].map((dir) => {
  const { zone } = zoneOf(dir);
  const { why, nodeOnly } = ZONES[zone];
  const relative = `^(?!(?:${allowedSpecs(dir).join('|')}))\\.\\.?/`;
  const patterns = [{ regex: relative, message: `crosses a boundary: ${why} (see eslint.config.js, STYLE.md)` }];
  if (nodeOnly) patterns.push({ regex: '^(?!node:)[^./]', message: `no npm packages here: ${why}` });
  // import() is not checked by no-restricted-imports; the same rule for it (esquery's regex
  // syntax has no "/", so it is written \x2F).
  const dynamic = patterns.map((p) => ({
    selector: `ImportExpression[source.value=/${p.regex.replaceAll('/', '\\x2F')}/]`,
    message: p.message,
  }));
  return {
    files: [`${dir}/*.{ts,mts,cts,js,mjs,cjs}`],
    rules: {
      'no-restricted-imports': ['error', { patterns }],
      'no-restricted-syntax': ['error', ...dynamic],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.cache/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Secret values must never reach the console; logs go through src/log.ts.
      'no-console': 'error',
    },
  },
  {
    // STYLE.md 15: a function over ~60 lines is a sign, over 100 a defect. Every line counts
    // (comments and blank lines too): a function too long to read in one screen is too long
    // whatever its lines hold.
    files: ['src/**/*.ts', 'adapters/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 100, skipBlankLines: false, skipComments: false, IIFEs: true }],
    },
  },
  {
    // CLI output and test/bench scripts print for a living.
    files: ['src/cli/**', 'bench/**', 'test/**', '.ci/**'],
    rules: { 'no-console': 'off' },
  },
  ...boundaryConfigs,
);
