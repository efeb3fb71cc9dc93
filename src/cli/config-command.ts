import type { Command } from 'commander';
import { formatDuration } from '../duration.js';
import type { LoadedConfig } from '../config/load.js';
import { coloursFor } from './colour.js';
import { die } from './output.js';
import { configOptionHelp } from './help-text.js';

export function registerConfig(program: Command): void {
  const config = program.command('config').description('work with the config file');
  config
    .command('check')
    .description('validate the config file offline: YAML, keys, durations, every source URI and the directories: map')
    .option('--config <file>', configOptionHelp())
    .option('--json', 'print the result as JSON: the profiles and warnings, or the problems')
    .addHelpText(
      'after',
      `
Prints each problem on its own line as FILE:LINE: PATH: what is wrong, all of them in one run,
and exits 8 if there is any. Warnings (FILE:LINE: warning: …) do not change the exit status. With
a managed config (/etc/keybroker/managed.yaml, or $KEYBROKER_MANAGED_CONFIG where that does not
exist), checks it too and lists what of yours it overrides, e.g.
  config.yaml:4: profiles.org: profile org is managed by /etc/keybroker/managed.yaml; your definition is ignored

Examples:
  keybroker config check
  keybroker config check --config ./keybroker.yaml
  keybroker config check --json | jq '.problems[]? | "\\(.line): \\(.message)"'`,
    )
    .action(async (opts: { config?: string; json?: boolean }) => {
      const [
        { AdapterPool },
        { adapterFor },
        { ConfigError, loadConfig, resolveConfigPath },
        { resolveManagedConfigPath },
        { createLogger },
      ] = await Promise.all([
        import('../adapter-pool.js'),
        import('../../adapters/registry.js'),
        import('../config/load.js'),
        import('../config/managed.js'),
        import('../log.js'),
      ]);
      const where = resolveConfigPath({ flag: opts.config });
      const out = coloursFor(process.stdout);
      const err = coloursFor(process.stderr);
      const pool = new AdapterPool({ find: adapterFor, env: process.env, log: createLogger({ level: 'silent' }) });
      try {
        const loaded = await loadConfig(where.path, pool.acquire, undefined, { managed: resolveManagedConfigPath() });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(checkedConfigJson(where.path, loaded), null, 2)}\n`);
          return;
        }
        const m = loaded.managed;
        if (m) {
          process.stdout.write(
            m.error
              ? `${err.fail(m.error)}\n`
              : `${m.file}: managed config, ${out.ok('ok')}, ${m.profiles.length} profile${m.profiles.length === 1 ? '' : 's'}${m.locked.length ? `, locked: ${m.locked.join(', ')}` : ''}\n`,
          );
        }
        process.stdout.write(
          `${where.path}: ${out.ok('ok')}, ${loaded.profiles.size} profile${loaded.profiles.size === 1 ? '' : 's'}${m && !m.error ? ` (${m.profiles.length} managed)` : ''}\n`,
        );
        for (const p of loaded.profiles.values()) {
          process.stdout.write(
            `  ${p.name}${p.managedBy ? ' (managed)' : ''}: ${p.scheme}: source, ttl ${formatDuration(p.ttlMs)}, maxStale ${formatDuration(p.maxStaleMs)}, timeout ${formatDuration(p.timeoutMs)}${p.multiline ? ', multiline' : ''}\n`,
          );
        }
        for (const w of loaded.warnings) {
          if (!w.kind)
            process.stdout.write(`${w.file}${w.line ? `:${w.line}` : ''}: ${w.path}: ${out.warn(w.message)}\n`);
        }
        for (const r of loaded.directories) {
          process.stdout.write(`  directory ${r.dir}${r.path !== r.dir ? ` (${r.path})` : ''} → ${r.profile}\n`);
        }
        if (!loaded.audit) process.stdout.write('  audit trail: off (audit: false)\n');
        // Warnings do not fail the check: the config works, it may just surprise.
        for (const w of loaded.warnings) {
          if (w.kind)
            process.stderr.write(
              `${w.file}${w.line ? `:${w.line}` : ''}: ${err.warn('warning')}: ${w.path}: ${w.message}\n`,
            );
        }
      } catch (e) {
        if (e instanceof ConfigError) {
          if (opts.json) {
            process.stdout.write(`${JSON.stringify({ file: e.file, ok: false, problems: e.problems }, null, 2)}\n`);
          } else {
            // One problem per line, its place (FILE:LINE:) in red.
            for (const line of e.report.split('\n')) {
              const at = line.indexOf(': ', e.file.length);
              process.stderr.write(at < 0 ? `${line}\n` : `${err.fail(line.slice(0, at + 1))}${line.slice(at + 1)}\n`);
            }
          }
          die('CONFIG_INVALID', `${e.problems.length} problem${e.problems.length === 1 ? '' : 's'} in ${where.path}`);
        }
        throw e;
      } finally {
        await pool.closeAll();
      }
    });
}

/** `config check --json` for a config that loads: what `config check` prints, as data. */
function checkedConfigJson(file: string, loaded: LoadedConfig): object {
  return {
    file,
    ok: true,
    managed: loaded.managed ?? null,
    profiles: [...loaded.profiles.values()].map((p) => ({
      name: p.name,
      kind: p.scheme,
      ttlMs: p.ttlMs,
      maxStaleMs: p.maxStaleMs,
      timeoutMs: p.timeoutMs,
      multiline: p.multiline ?? false,
      ...(p.managedBy && { managedBy: p.managedBy }),
    })),
    directories: loaded.directories.map((r) => ({ dir: r.dir, path: r.path, profile: r.profile })),
    audit: loaded.audit,
    warnings: loaded.warnings,
  };
}
