import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { StageMetrics } from '../core/metrics.js';
import type { Embedder } from '../embedding/embedder.js';
import { createEmbedder } from '../embedding/transformers.js';
import type { InferenceBackend } from '../inference/backend.js';
import { configuredConcurrency, createBackend } from '../inference/factory.js';
import { instrumentBackend } from '../inference/instrumented.js';
import { RewardClient, type RewardModel } from '../inference/reward.js';
import type { StageDeps } from '../processors/stage.js';
import type { ResolvedStage, StageResources, Topology } from './load.js';

/** Resources of one kind, each created once on first load and shared by every stage that uses it. */
class Pool<T extends { close(): Promise<void> }> {
  private readonly loading = new Map<string, Promise<T>>();
  private readonly loaded = new Map<string, T>();

  constructor(private readonly create: (name: string) => Promise<T>) {}

  /** Concurrent loads of one name share one creation. */
  load(name: string): Promise<T> {
    let pending = this.loading.get(name);
    if (!pending) {
      pending = this.create(name).then((value) => {
        this.loaded.set(name, value);
        return value;
      });
      this.loading.set(name, pending);
    }
    return pending;
  }

  get(name: string): T | undefined {
    return this.loaded.get(name);
  }

  async close(): Promise<void> {
    const all = await Promise.allSettled(this.loading.values());
    await Promise.allSettled(all.flatMap((r) => (r.status === 'fulfilled' ? [r.value.close()] : [])));
  }
}

/**
 * Backends, embedders and reward endpoints of one process: each is loaded once, before the first stage that
 * declares it (StageDefinition.uses) is created, and shared by all of them (one model in memory, one
 * connection pool per server).
 */
export class Resources {
  private readonly backends: Pool<InferenceBackend>;
  private readonly embedders: Pool<Embedder>;
  private readonly rewards: Pool<RewardModel>;

  constructor(
    private readonly topology: Topology,
    private readonly logger: Logger,
    /** When given, each backend reports its requests, tokens and latency here. */
    private readonly metrics?: StageMetrics,
  ) {
    this.backends = new Pool(async (name) => {
      const backend = await createBackend(name, this.config('backends', name), this.logger);
      return this.metrics ? instrumentBackend(name, backend, this.metrics) : backend;
    });
    this.embedders = new Pool((name) => createEmbedder(this.config('embedders', name)));
    this.rewards = new Pool(async (name) => new RewardClient(this.config('rewards', name), name));
  }

  /** Loads what the given stages use, one resource at a time (two models need not load side by side). */
  async load(stages: readonly ResolvedStage[]): Promise<void> {
    for (const stage of stages) {
      for (const name of stage.uses.backends) await this.backends.load(name);
      for (const name of stage.uses.embedders) await this.embedders.load(name);
      for (const name of stage.uses.rewards) await this.rewards.load(name);
    }
  }

  /**
   * Requests the backends of a stage run at once, summed (undefined: the stage uses no backend). A backend this
   * process has not loaded (a stage run by another process) answers from its config.
   */
  backendConcurrency(stage: ResolvedStage): number | undefined {
    let total: number | undefined;
    for (const name of stage.uses.backends) {
      const backend = this.backends.get(name);
      total = (total ?? 0) + (backend ? (backend.concurrency ?? 1) : configuredConcurrency(this.config('backends', name)));
    }
    return total;
  }

  /** What `stage` may use: the loaded resources its definition declared, and nothing else. */
  depsFor(stage: ResolvedStage): StageDeps {
    const lookup = <T extends { close(): Promise<void> }>(kind: keyof StageResources, pool: Pool<T>, name: string): T => {
      const what = kind.slice(0, -1);
      if (!stage.uses[kind].includes(name)) {
        throw new ConfigError(`stage ${stage.name}: ${what} '${name}' is not among the ${kind} its type '${stage.type}' declares it uses (${stage.uses[kind].join(', ') || 'none'})`);
      }
      const value = pool.get(name);
      if (!value) throw new ConfigError(`stage ${stage.name}: ${what} '${name}' is not loaded: load the stage's resources before creating it`);
      return value;
    };
    return {
      stageName: stage.name,
      logger: this.logger.child({ stage: stage.name }),
      backend: (name) => lookup('backends', this.backends, name),
      embedder: (name) => lookup('embedders', this.embedders, name),
      reward: (name) => lookup('rewards', this.rewards, name),
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.backends.close(), this.embedders.close(), this.rewards.close()]);
  }

  private config<K extends keyof StageResources>(kind: K, name: string): Topology[K][string] {
    const config = this.topology[kind][name] as Topology[K][string] | undefined;
    // Load validation names the stage first; this guards topologies built in code.
    if (!config) throw new ConfigError(`${this.topology.source}: no ${kind.slice(0, -1)} named '${name}' under ${kind} (have: ${Object.keys(this.topology[kind]).join(', ') || 'none'})`);
    return config;
  }
}
