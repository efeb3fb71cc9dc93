// The broker: every profile's cache, built from a loaded config and rebuilt on reload.
// A reload keeps the cache of each profile whose settings did not change.
import NodeCache from 'node-cache';
import type { AdapterModule, FindAdapter, Logger } from '../adapter.js';
import { AdapterPool } from '../adapter-pool.js';
import type { LoadedConfig, ResolvedProfile } from '../config/load.js';
import { BrokerError } from '../errors.js';
import { ServedValues } from '../secret.js';
import type { ProfileStatus, SourceStatus, WireError } from '../protocol/messages.js';
import type { SecretValue } from '../secret.js';
import { ProfileCache } from './profile-cache.js';

export interface BrokerOptions {
  log: Logger;
  /** Loads a source kind's adapter module: the daemon passes adapters/registry.ts's adapterFor. */
  findAdapter: FindAdapter;
  env?: NodeJS.ProcessEnv;
  /** Adapter modules to use instead of the registry's (tests). */
  adapterModules?: Partial<Record<string, AdapterModule>>;
}

export interface ReloadSummary {
  added: string[];
  changed: string[];
  removed: string[];
  kept: string[];
}

export class Broker {
  readonly pool: AdapterPool;
  readonly #log: Logger;
  // No clones: a SecretValue must not be copied around. No TTLs and no check period: node-cache
  // would expire entries by Date.now, and each profile's cache drops its entry at staleUntil by
  // the one clock that also decides when it is fresh (ProfileCache#scheduleDrop).
  readonly #store = new NodeCache({ useClones: false, stdTTL: 0, checkperiod: 0 });
  #profiles = new Map<string, ProfileCache>();
  /** Shared by every profile: a child's error output is searched for any profile's values. */
  readonly #served = new ServedValues();
  #config: LoadedConfig | undefined;

  constructor(options: BrokerOptions) {
    this.#log = options.log;
    this.pool = new AdapterPool({
      find: options.findAdapter,
      env: options.env ?? process.env,
      log: options.log,
      ...(options.adapterModules && { modules: options.adapterModules }),
    });
  }

  profileNames(): string[] {
    return [...this.#profiles.keys()];
  }

  /** Install a loaded config. Profiles with an unchanged fingerprint keep their cache. */
  async apply(config: LoadedConfig): Promise<ReloadSummary> {
    const summary: ReloadSummary = { added: [], changed: [], removed: [], kept: [] };
    const next = new Map<string, ProfileCache>();
    const created: ProfileCache[] = [];
    try {
      for (const [name, profile] of config.profiles) {
        const current = this.#profiles.get(name);
        if (current && current.profile.fingerprint === profile.fingerprint) {
          next.set(name, current);
          summary.kept.push(name);
          continue;
        }
        const cache = await this.#createCache(profile);
        created.push(cache);
        next.set(name, cache);
        (current ? summary.changed : summary.added).push(name);
      }
    } catch (err) {
      for (const c of created) c.dispose();
      throw err;
    }
    for (const [name, cache] of this.#profiles) {
      if (next.get(name) !== cache) {
        cache.dispose();
        if (!config.profiles.has(name)) summary.removed.push(name);
      }
    }
    this.#profiles = next;
    this.#config = config;
    await this.releaseUnusedAdapters();
    return summary;
  }

  /**
   * Close the adapters the installed config does not use: those of a replaced config, and those a
   * config that failed to load created while it was being checked.
   */
  async releaseUnusedAdapters(): Promise<void> {
    const used = [...(this.#config?.profiles.values() ?? [])].map((p) => AdapterPool.keyOf(p.scheme, p.settings));
    await this.pool.retain(new Set(used));
  }

  async #createCache(profile: ResolvedProfile): Promise<ProfileCache> {
    const adapter = await this.pool.acquire(profile.scheme, profile.settings);
    const ref = await adapter.parse(profile.source, {
      overrides: profile.overrides,
      profile: profile.name,
      output: profile.output,
      ...(profile.locked && { locked: profile.locked }),
      ...(profile.secretEnv && { secretEnv: profile.secretEnv }),
    });
    return new ProfileCache({
      profile,
      adapter,
      ref,
      store: this.#store,
      log: this.#log,
      served: this.#served,
    });
  }

  profile(name: string): ProfileCache {
    const cache = this.#profiles.get(name);
    if (!cache) {
      const known = this.profileNames();
      const where = this.#config ? ` in ${this.#config.file}` : '';
      throw new BrokerError(
        'UNKNOWN_PROFILE',
        `no profile "${name}"${where}${known.length ? ` (profiles: ${known.join(', ')})` : ' (it has no profiles)'}`,
      );
    }
    return cache;
  }

  /**
   * Refetch one profile, or all of them; failures are reported per profile. `onResult` sees each
   * profile's outcome (the audit trail records it).
   */
  async refresh(
    names: string[],
    onResult?: (
      profile: string,
      result: { value: SecretValue; version: string | undefined } | { error: WireError },
    ) => void,
  ): Promise<{ refreshed: string[]; failed: Array<{ profile: string; error: WireError }> }> {
    const caches = names.map((n) => this.profile(n));
    const results = await Promise.allSettled(caches.map((c) => c.refresh()));
    const refreshed: string[] = [];
    const failed: Array<{ profile: string; error: WireError }> = [];
    results.forEach((r, i) => {
      const name = caches[i]!.name;
      if (r.status === 'fulfilled') {
        refreshed.push(name);
        onResult?.(name, r.value);
      } else {
        const error =
          r.reason instanceof BrokerError ? r.reason.toWire() : { code: 'INTERNAL', message: 'refresh failed' };
        failed.push({ profile: name, error });
        onResult?.(name, { error });
      }
    });
    return { refreshed, failed };
  }

  /**
   * Serve `value` for a profile from now on, without a fetch: `keybroker key set` has just stored it
   * at the profile's source. Only a source that can be written to (the keychain) takes one, and
   * only when the profile's source is the one the value was stored at — a daemon running another
   * config for the profile must not serve a value its source does not hold.
   */
  install(name: string, source: string, value: SecretValue): { changed: boolean | null } {
    const cache = this.profile(name);
    if (!cache.writable) {
      throw new BrokerError(
        'BAD_REQUEST',
        `profile "${name}" reads ${cache.description}, which keybroker cannot write: only keyring: profiles take a value (keybroker key set)`,
      );
    }
    if (cache.profile.source !== source) {
      throw new BrokerError(
        'CONFIG_INVALID',
        `profile "${name}" in the running daemon reads ${cache.description}, not the entry the value was stored at: the config changed since the daemon loaded it — run: keybroker reload`,
      );
    }
    return cache.install(value);
  }

  /** Drop the cached values of these profiles from memory now; the next read fetches again. */
  forget(names: string[]): string[] {
    const caches = names.map((n) => this.profile(n));
    for (const c of caches) c.forget();
    return caches.map((c) => c.name);
  }

  status(): ProfileStatus[] {
    return [...this.#profiles.values()].map((c) => c.status());
  }

  sourceStatuses(): Promise<SourceStatus[]> {
    return this.pool.statuses();
  }

  /** Wait for running fetches, drop every value, close every adapter. */
  async close(): Promise<void> {
    const caches = [...this.#profiles.values()];
    for (const c of caches) c.dispose();
    await Promise.all(caches.map((c) => c.settle()));
    this.#profiles.clear();
    this.#store.flushAll();
    this.#store.close();
    await this.pool.closeAll();
  }
}
