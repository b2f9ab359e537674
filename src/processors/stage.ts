import type { z } from 'zod';
import type { Logger } from '../core/logger.js';
import type { InferenceBackend } from '../inference/backend.js';
import type { Embedder } from '../embedding/embedder.js';
import type { RewardModel } from '../inference/reward.js';
import type { SchemaName } from '../serde/schemas.js';

/** A decoded input record, with where it came from. */
export interface InputRecord<T> {
  value: T;
  key: string | null;
  headers: Record<string, string>;
  topic: string;
  partition: number;
  offset: string;
  timestamp: string;
}

/** An output record. `port` names the output it goes to ('out' unless said otherwise). */
export interface Emit<O> {
  value: O;
  key?: string | null;
  port?: string;
}

/**
 * What became of one input record. A stage returns exactly one outcome per input, in input order.
 * - emit: zero or more output records (zero means "consumed, nothing to pass on", e.g. an aggregate).
 * - reject: the record is valid but does not pass a rule; it goes to the rejects topic with the rule.
 * - dead: the record cannot be processed at all; it goes to the dead-letter topic with the reason.
 * - failed: processing this record threw; the runner retries it alone (retryable errors, within its attempt
 *   budget) or dead-letters it, while the other records of the batch keep their outcomes.
 * Throwing from process() instead fails every record of the call (e.g. a shared model that cannot run).
 */
export type Outcome<O> =
  | { kind: 'emit'; records: Emit<O>[] }
  | { kind: 'reject'; rule: string; reason: string; record?: unknown }
  | { kind: 'dead'; code: string; reason: string }
  | { kind: 'failed'; error: unknown };

export interface StageContext {
  readonly logger: Logger;
  /** Aborted when the stage is shutting down: stop starting new work. */
  readonly signal: AbortSignal;
  /** Keeps the consumer's group membership alive during long work; cheap to call often. */
  heartbeat(): Promise<void>;
}

/** What a changelog read covered. */
export interface ChangelogRead {
  records: number;
  /** The changelog's end offset when the read began: every committed record below it was read. */
  next: bigint;
}

/** Reads a port's compacted changelog topic (one partition), committed records only, in offset order. */
export interface StateRestorer {
  /** The topic behind a port (names state kept beside it, e.g. snapshots). */
  topicOf(port: string): string;
  /** From `from` (default: the beginning) up to the end offset seen when the read begins. */
  restore(port: string, onRecord: (key: string | null, value: unknown, offset: bigint) => void | Promise<void>, from?: bigint): Promise<ChangelogRead>;
}

/** Transforms batches of input records. Pure with respect to Kafka: the runner does all I/O. */
export interface Processor<I, O> {
  init?(ctx: StageContext, state: StateRestorer): Promise<void>;
  /**
   * Exactly-once stages: called on each (re)assignment of an input partition, after this instance has fenced
   * every earlier writer of it and before the group's committed offset is read, so state caught up here
   * includes everything a previous owner committed. The first batch of the partition waits for it.
   */
  onAssigned?(partition: number, state: StateRestorer, ctx: StageContext): Promise<void>;
  process(batch: InputRecord<I>[], ctx: StageContext): Promise<Outcome<O>[]>;
  close?(): Promise<void>;
}

/** Produces records from nothing (e.g. Magpie instruction extraction). */
export interface Source<O> {
  /**
   * One writer at a time (e.g. a source counting towards a target across restarts): every instance writes with
   * the same transactional id, a new one fences the old, and the old one stops producing. Otherwise each
   * instance writes on its own and any number run side by side.
   */
  readonly exclusive?: boolean;
  /** `state` reads the source's own extra ports back (e.g. progress committed before a restart). */
  init?(ctx: StageContext, state: StateRestorer): Promise<void>;
  /** Up to `max` outcomes; an empty array means the source is finished. */
  next(max: number, ctx: StageContext): Promise<Outcome<O>[]>;
  close?(): Promise<void>;
}

/** Names of the topology's resources (its `backends:`, `embedders:` and `rewards:`) that one stage uses. */
export interface StageUses {
  readonly backends?: readonly string[];
  readonly embedders?: readonly string[];
  readonly rewards?: readonly string[];
}

/** Resources a stage may use, resolved by name from the topology: only the ones its definition's `uses` names. */
export interface StageDeps {
  readonly stageName: string;
  readonly logger: Logger;
  backend(name: string): InferenceBackend;
  embedder(name: string): Embedder;
  reward(name: string): RewardModel;
}

interface StageDefinitionBase<C extends z.ZodObject> {
  /** The `type:` value in a topology. */
  readonly type: string;
  readonly description: string;
  /** Stage-specific topology fields, validated on load. */
  readonly config: C;
  /**
   * The topology resources a configured stage uses, whatever its fields are called: loading checks each
   * exists and loads it before create(), which gets only these through its StageDeps.
   */
  readonly uses?: (config: z.infer<C>) => StageUses;
  /** Avro record of the main output. */
  readonly outputSchema: SchemaName;
  /**
   * Extra outputs besides 'out', e.g. a changelog for state; each maps to a topic in the topology. A port with
   * `defaultSuffix` needs no topic in the topology: it defaults to the stage's output topic plus the suffix.
   */
  readonly extraPorts?: Readonly<Record<string, { schema: SchemaName; compacted?: boolean; defaultSuffix?: string }>>;
  /**
   * The stage keeps one state over its whole input in arrival order (an index of every earlier record): its
   * input must have one partition, read with concurrency 1 and exactly-once.
   */
  readonly singlePartitionInput?: boolean;
  /** For schema-agnostic stages (e.g. pass-through): the record types follow from the config. */
  readonly schemasFromConfig?: (config: z.infer<C>) => { input: SchemaName; output: SchemaName };
  /**
   * For tag stages: the record fields the stage fills in. A record that has them all (non-null) already is
   * passed through untouched by a replay, so re-filtering tagged data needs no inference.
   */
  readonly writesFields?: (config: z.infer<C>) => readonly string[];
}

export interface ProcessorDefinition<C extends z.ZodObject, I, O> extends StageDefinitionBase<C> {
  readonly kind: 'processor';
  readonly inputSchema: SchemaName;
  create(config: z.infer<C>, deps: StageDeps): Processor<I, O>;
}

export interface SourceDefinition<C extends z.ZodObject, O> extends StageDefinitionBase<C> {
  readonly kind: 'source';
  create(config: z.infer<C>, deps: StageDeps): Source<O>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyStageDefinition = ProcessorDefinition<z.ZodObject, any, any> | SourceDefinition<z.ZodObject, any>;

export function defineProcessor<C extends z.ZodObject, I, O>(def: Omit<ProcessorDefinition<C, I, O>, 'kind'>): ProcessorDefinition<C, I, O> {
  return { ...def, kind: 'processor' };
}

export function defineSource<C extends z.ZodObject, O>(def: Omit<SourceDefinition<C, O>, 'kind'>): SourceDefinition<C, O> {
  return { ...def, kind: 'source' };
}

export const emit = <O>(...records: Emit<O>[]): Outcome<O> => ({ kind: 'emit', records });
export const emitValue = <O>(value: O, key?: string | null): Outcome<O> => ({ kind: 'emit', records: [{ value, key }] });
export const reject = <O>(rule: string, reason: string, record?: unknown): Outcome<O> => ({ kind: 'reject', rule, reason, record });
export const dead = <O>(code: string, reason: string): Outcome<O> => ({ kind: 'dead', code, reason });
export const failed = <O>(error: unknown): Outcome<O> => ({ kind: 'failed', error });

/**
 * Runs `fn` for every record at once (the backend bounds concurrency), each on its own: a record whose call
 * throws becomes a `failed` outcome and never cancels or discards its siblings' finished work.
 */
export function eachRecord<I, O>(batch: InputRecord<I>[], fn: (record: InputRecord<I>) => Promise<Outcome<O>>): Promise<Outcome<O>[]> {
  return Promise.all(batch.map((r) => fn(r).catch((error: unknown) => failed<O>(error))));
}
