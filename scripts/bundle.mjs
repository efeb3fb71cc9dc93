// `npm run build` runs this after tsc has built dist/: it bundles the CLI and daemon
// (dist/src/cli/main.js) and the shim (dist/src/shim/keybroker-shim.cjs).
//
// The CLI and daemon are bundled for the daemon's memory, which it holds for as long as it runs
// (figures: idle RSS on Node 24, measured by `npm run bench`; docs/performance.md):
// - loaded file by file, its ~250 ES modules (zod and yaml alone are ~170) keep their records
//   and sources, and resolving them runs Node's path code hot enough that Node 22+ optimises it
//   with TurboFan during start-up, which maps several MiB more of the node binary: ~70 -> ~64 MiB;
// - minified, the sources V8 keeps for lazy compilation are less than half the size: -> ~62 MiB;
// - zod re-exports all its ~60 locales as a namespace, so esbuild cannot drop them; we never
//   show zod's messages, so only English is kept: -> ~61 MiB.
// Stack traces from the bundle name minified functions; rebuild without `minify` to debug.
//
// What stays a separate file: each module loaded with import() (adapters, doctor, …) becomes its
// own chunk, code they share with the entry goes to shared chunks (one copy of BrokerError for
// `instanceof`), and npm packages other than the ones listed stay in node_modules, so an
// adapter's SDK still loads only when a profile uses it (and keeps its own files, e.g. WASM).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const CLI_OUT = path.join(ROOT, 'dist', 'src', 'cli');
/**
 * Packages the CLI and the daemon load at start; their own dependencies come with them. Also the
 * TOML patcher (no dependencies, ~50 KiB minified), which only `setup codex` and `doctor` load,
 * in their own chunks: those commands then need nothing from node_modules, as the rest do not.
 */
const BUNDLED = new Set(['commander', 'node-cache', 'picocolors', 'pino', 'yaml', 'zod', '@decimalturn/toml-patch']);

const packageName = (spec) =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/');

// Two bundles, each with its own chunks: cli.js, every command; and daemon.js, `keybroker daemon`
// alone (src/cli/daemon-main.ts), which main.js loads for that command. The long-lived daemon so
// loads ~15 files instead of ~40: each import is a path resolution, and ~140 of them at start-up
// are enough for Node 22+ to optimise its path code, which maps ~5 MiB more of the node binary
// for as long as the daemon runs (Node 24 idle RSS ~70 instead of ~63 MiB; docs/performance.md).
for (const [entry, out, chunks] of [
  ['src/cli/main.ts', 'cli', 'chunks'],
  ['src/cli/daemon-main.ts', 'daemon', 'daemon-chunks'],
]) {
  // Old chunks have other hashes; they would pile up.
  fs.rmSync(path.join(CLI_OUT, chunks), { recursive: true, force: true });
  await bundleCli(entry, out, chunks);
}

async function bundleCli(entry, out, chunks) {
  await build({
    absWorkingDir: ROOT,
    entryPoints: [{ in: entry, out }],
    outdir: CLI_OUT,
    entryNames: '[name]',
    chunkNames: `${chunks}/[name]-[hash]`,
    bundle: true,
    splitting: true,
    minify: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
    // Bundled CommonJS packages (commander, node-cache, pino) call require() for Node built-ins.
    banner: {
      js: 'import { createRequire as __kbCreateRequire } from "node:module"; const require = __kbCreateRequire(import.meta.url);',
    },
    plugins: [
      {
        name: 'bundle-only-listed-packages',
        setup(b) {
          b.onResolve({ filter: /^[^./]/ }, (args) => {
            if (args.path.startsWith('node:')) return { external: true };
            // A bundled package's own dependencies are bundled with it.
            if (args.importer.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
            return BUNDLED.has(packageName(args.path)) ? undefined : { external: true };
          });
        },
      },
      {
        name: 'zod-english-only',
        setup(b) {
          // If a zod release moves this file, nothing matches and the bundle is only bigger.
          b.onLoad({ filter: /[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, (args) => ({
            contents: 'export { default as en } from "./en.js";',
            loader: 'js',
            resolveDir: path.dirname(args.path),
          }));
        },
      },
    ],
  });
}

// errors.js: src/errors.ts as one file of its own (no shared chunk, whose failed load Node would
// remember), for main.js to word a failure to load cli.js.
await build({
  absWorkingDir: ROOT,
  entryPoints: ['src/errors.ts'],
  outfile: path.join(CLI_OUT, 'errors.js'),
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
});

// main.js, the command, only loads cli.js. Node reads cli.js's ~15 static chunks at once, before
// any of our code runs: with a tight `ulimit -n` that is where descriptors run out, and it would
// end in a stack trace. Loaded from here, it ends in the same one line (exit 20) as running out
// anywhere else; the failed reads have closed their descriptors, so errors.js can load then.
// What main.js says about running out of descriptors when not even errors.js can be loaded.
const FALLBACK = {
  EMFILE: { message: 'too many open files; raise the limit with: ulimit -n 1024', exitCode: 20 },
  ENFILE: {
    message: 'the system has too many open files (ENFILE); close some programs, or raise fs.file-max',
    exitCode: 20,
  },
};
fs.writeFileSync(
  path.join(CLI_OUT, 'main.js'),
  `#!/usr/bin/env node
// Written by scripts/bundle.mjs: the CLI is cli.js; \`keybroker [--socket PATH] daemon\` loads
// daemon.js, the same command bundled alone, so the long-lived process loads no other command.
const args = process.argv.slice(2);
const command = args.find((arg, i) => !arg.startsWith('-') && args[i - 1] !== '--socket');
try {
  await import(command === 'daemon' ? './daemon.js' : './cli.js');
} catch (err) {
  // The other reads of that moment may still hold descriptors: a few tries, 10 ms apart.
  let errors;
  for (let attempt = 0; errors === undefined; attempt++) {
    // Node remembers a failed load of a URL: each try asks for another one.
    errors = await import(\`./errors.js?try=\${attempt}\`).catch(() =>
      attempt >= 20 ? null : new Promise((resolve) => setTimeout(resolve, 10)),
    );
  }
  // Where even errors.js cannot be read, the same line without the limit's value (which is read
  // from a file) and the same exit status (RESOURCE_EXHAUSTED, 20).
  const known = errors ? errors.resourceError(err) : ${JSON.stringify(FALLBACK)}[err?.code];
  if (!known) throw err;
  process.stderr.write(\`keybroker: \${errors ? errors.renderError(known) : known.message}\\n\`);
  process.exitCode = known.exitCode;
}
`,
);

// The shim: one CommonJS file, because Node 20 sets up its ES-module loader only for an
// ES-module entry point, which costs more than everything else the shim does.
await build({
  absWorkingDir: ROOT,
  entryPoints: ['src/shim/keybroker-shim.ts'],
  outfile: path.join(ROOT, 'dist', 'src', 'shim', 'keybroker-shim.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  logLevel: 'warning',
  plugins: [builtinsWithoutInterop()],
});

/**
 * `import fs from 'node:fs'` in a CommonJS bundle becomes __toESM(require('node:fs')), which
 * copies every export of the module onto a new object: ~0.5 ms for fs, net, os and path, a tenth
 * of the shim's own start-up time. Instead each built-in is a small ES module whose default
 * export is the module itself and whose named exports are its functions, read once; unused ones
 * are dropped by tree-shaking. Getters (fs.promises) are not exported, so importing one by name
 * fails the build rather than loading it eagerly.
 */
function builtinsWithoutInterop() {
  return {
    name: 'builtins-without-interop',
    setup(b) {
      b.onResolve({ filter: /^node:/ }, (args) =>
        args.namespace === 'builtin' ? { path: args.path, external: true } : { path: args.path, namespace: 'builtin' },
      );
      b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => {
        const mod = require(args.path);
        const names = Object.keys(mod).filter(
          (k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default' && 'value' in Object.getOwnPropertyDescriptor(mod, k),
        );
        const exports = names.map((k) => `export const ${k} = /* @__PURE__ */ (() => m.${k})();`).join('\n');
        return {
          contents: `const m = require(${JSON.stringify(args.path)});\nexport default m;\n${exports}\n`,
          loader: 'js',
        };
      });
    },
  };
}
