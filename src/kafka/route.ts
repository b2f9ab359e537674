import type { CircuitBreaker } from '../core/circuit-breaker.js';
import type { BatchCounts } from '../core/metrics.js';
import { errorCode, errorMessage, isRetryable, MagpieError } from '../core/errors.js';
import { scrubRegistered, type Logger } from '../core/logger.js';
import { backoffDelay, sleep } from '../core/retry.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import type { InputRecord, Outcome, StageContext } from '../processors/stage.js';
import type { RetryConfig } from '../topology/schema.js';
import { DEFAULT_MAX_MESSAGE_BYTES, largestMessage, messageBytes, type OutboundMessage } from './send-plan.js';

export type { OutboundMessage } from './send-plan.js';

/** A record exactly as it came off the wire. */
export interface RawRecord {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
  timestamp: string;
}

export interface RoutedBatch {
  /** Topic → messages, in input order. */
  byTopic: Map<string, OutboundMessage[]>;
  counts: BatchCounts;
  /** Per stage, for a chain of stages: what each took in and let out (per port). */
  byStage?: Map<string, BatchCounts>;
}

/** What the router needs to know about the stage; a subset of ResolvedStage so it is testable alone. */
export interface RouteTarget {
  name: string;
  inputSchema: SchemaName | undefined;
  ports: Readonly<Record<string, string>>;
  portSchemas: Readonly<Record<string, SchemaName>>;
  rejects: string;
  deadLetter: string;
  retry: RetryConfig;
  /**
   * Attempts each record gets while the stage's other calls are answered; past it the record is dead-lettered.
   * 0: never. A server that fails for every record (an outage) spends no record's budget: records wait.
   */
  deadLetterAfterAttempts: number;
  /** max.message.bytes per topic as the broker has it; outputs too large for their topic are dead-lettered. */
  messageLimits?: Readonly<Record<string, number>>;
  /** Partitions per output topic as the broker had them at start: each send goes to one partition (planLanes). */
  partitionCounts?: ReadonlyMap<string, number>;
}

export function messageLimit(target: Pick<RouteTarget, 'messageLimits'>, topic: string): number {
  return target.messageLimits?.[topic] ?? DEFAULT_MAX_MESSAGE_BYTES;
}

/**
 * What a committer asks of a target's output topics: each one's size limit and partition count, read from the
 * target when a send is planned (the runner fills both in at start).
 */
export function outputTopics(target: Pick<RouteTarget, 'messageLimits' | 'partitionCounts'>): { limitOf: (topic: string) => number; partitionsOf: (topic: string) => number | undefined } {
  return { limitOf: (topic) => messageLimit(target, topic), partitionsOf: (topic) => target.partitionCounts?.get(topic) };
}

export type ProcessFn<I, O> = (batch: InputRecord<I>[], ctx: StageContext) => Promise<Outcome<O>[]>;

export function headersToStrings(headers: Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (v === undefined) continue;
    const first = Array.isArray(v) ? v[0] : v;
    if (first !== undefined) out[k] = first.toString();
  }
  return out;
}

/** One stage of a chain: how it processes, where its outputs, rejects and dead letters go, its circuit. */
export interface ChainLink {
  process: ProcessFn<unknown, unknown>;
  target: RouteTarget;
  breaker?: CircuitBreaker;
}

/**
 * Decode → process (with retries) → encode, for one chunk of one partition. Pure with respect to Kafka:
 * the caller sends `byTopic` and commits the offsets in one step. Every input ends in exactly one of:
 * outputs, a reject record, a dead-letter record; or the whole call throws (nothing may be committed).
 * `breaker`, shared by the chunks of a stage, holds every attempt back while the stage's calls keep failing.
 */
export function routeBatch<I, O>(
  raws: RawRecord[],
  process: ProcessFn<I, O>,
  serde: RecordSerde,
  target: RouteTarget,
  ctx: StageContext,
  breaker?: CircuitBreaker,
): Promise<RoutedBatch> {
  return routeChain(raws, [{ process: process as ProcessFn<unknown, unknown>, target, ...(breaker ? { breaker } : {}) }], serde, ctx);
}

/**
 * routeBatch for stages chained in memory: what a stage emits on its 'out' port is handed to the next stage
 * without a topic in between; the last stage's outputs, every stage's other ports, rejects and dead letters
 * are encoded for their topics, in input order. A record rejected or dead-lettered by a stage stops there
 * (its dead letter names that stage and carries the chain's input bytes).
 */
export async function routeChain(raws: RawRecord[], links: readonly ChainLink[], serde: RecordSerde, ctx: StageContext): Promise<RoutedBatch> {
  const byTopic = new Map<string, OutboundMessage[]>();
  const routers = links.map((l) => new OutcomeRouter<unknown>(serde, l.target, links.length > 1 ? ctx.logger.child({ stage: l.target.name }) : ctx.logger, byTopic));
  // Per input, what to route, in the order it happened: stages downstream come after the ones before them.
  const routed: { link: number; outcome: FinalOutcome<unknown>; input: unknown }[][] = raws.map(() => []);
  const head = links[0]!.target;
  if (!head.inputSchema) throw new Error(`stage ${head.name} has no input schema`);
  let items: { index: number; record: InputRecord<unknown> }[] = [];
  for (let i = 0; i < raws.length; i++) {
    const raw = raws[i]!;
    try {
      const value = await serde.decode(head.inputSchema, raw.value, raw.headers);
      items.push({ index: i, record: { value, key: raw.key?.toString() ?? null, headers: raw.headers, topic: raw.topic, partition: raw.partition, offset: raw.offset, timestamp: raw.timestamp } });
    } catch (err) {
      if (isRetryable(err)) throw err;
      routers[0]!.log.warn({ offset: raw.offset, code: errorCode(err), err: errorMessage(err) }, 'cannot decode record; dead-lettering it');
      routed[i]!.push({ link: 0, outcome: { kind: 'dead', code: errorCode(err), reason: errorMessage(err) }, input: undefined });
    }
  }
  const inputs = links.map(() => 0);
  for (let k = 0; k < links.length && items.length > 0; k++) {
    const link = links[k]!;
    inputs[k] = items.length;
    const stageCtx = links.length > 1 ? { ...ctx, logger: routers[k]!.log } : ctx;
    const outcomes = await processWithRetries(items.map((it) => it.record), link.process, link.target, stageCtx, link.breaker);
    const next: typeof items = [];
    outcomes.forEach((outcome, j) => {
      const item = items[j]!;
      if (k === links.length - 1 || outcome.kind !== 'emit') {
        routed[item.index]!.push({ link: k, outcome, input: item.record.value });
        return;
      }
      const forward = outcome.records.filter((r) => (r.port ?? 'out') === 'out');
      const others = outcome.records.filter((r) => (r.port ?? 'out') !== 'out');
      if (others.length > 0) routed[item.index]!.push({ link: k, outcome: { kind: 'emit', records: others }, input: item.record.value });
      routers[k]!.forwarded += forward.length;
      for (const r of forward) next.push({ index: item.index, record: { ...item.record, value: r.value, key: r.key ?? item.record.key } });
    });
    items = next;
  }
  for (let i = 0; i < raws.length; i++) {
    for (const { link, outcome, input } of routed[i]!) await routers[link]!.add(outcome, input, raws[i]);
  }
  const counts = { in: raws.length, out: 0, rejected: 0, deadLettered: 0 };
  const byStage = new Map<string, BatchCounts>();
  routers.forEach((r, k) => {
    const out = r.counts.out + r.forwarded;
    const c = { ...r.counts, in: k === 0 ? raws.length : inputs[k]!, out, ports: { ...r.counts.ports, ...(out > 0 ? { out } : {}) } };
    byStage.set(links[k]!.target.name, c);
    counts.rejected += c.rejected;
    counts.deadLettered += c.deadLettered;
  });
  counts.out = routers.at(-1)!.counts.out;
  return { byTopic, counts: { ...counts, ports: routers.at(-1)!.counts.ports }, byStage };
}

type FinalOutcome<O> = Exclude<Outcome<O>, { kind: 'failed' }> | { kind: 'dead'; code: string; reason: string; attempts?: number };

/**
 * Turns final outcomes into encoded messages per topic: outputs, reject records and dead letters. An output that
 * cannot be encoded, or is too large for its topic, becomes a dead letter instead. Shared by stages and sources.
 */
export class OutcomeRouter<O> {
  readonly counts: { in: number; out: number; rejected: number; deadLettered: number; ports: Record<string, number> } = { in: 0, out: 0, rejected: 0, deadLettered: 0, ports: {} };
  /** Records handed on in memory to the next stage of a chain (counted as outputs of this stage). */
  forwarded = 0;

  constructor(
    private readonly serde: RecordSerde,
    private readonly target: RouteTarget,
    private readonly logger: Logger,
    readonly byTopic = new Map<string, OutboundMessage[]>(),
  ) {}

  get log(): Logger {
    return this.logger;
  }

  private push(topic: string, msg: OutboundMessage): void {
    const list = this.byTopic.get(topic);
    if (list) list.push(msg);
    else this.byTopic.set(topic, [msg]);
  }

  /** Routes one outcome; `raw` is the input it answers (none for a source). */
  async add(outcome: FinalOutcome<O>, input: unknown, raw?: RawRecord): Promise<void> {
    const { serde, target, logger } = this;
    if (outcome.kind === 'emit') {
      try {
        const messages: [string, OutboundMessage, string][] = [];
        for (const rec of outcome.records) {
          const port = rec.port ?? 'out';
          const topic = target.ports[port];
          const schema = target.portSchemas[port];
          if (!topic || !schema) throw new MagpieError('STAGE_BAD_PORT', `stage ${target.name} emitted to unknown port '${port}'`);
          const encoded = await serde.encode(schema, rec.value, topic);
          const key = rec.key ?? raw?.key ?? uuidOf(rec.value) ?? null;
          const msg = { key, value: encoded.value, headers: encoded.headers };
          const limit = messageLimit(target, topic);
          if (messageBytes(msg) > largestMessage(limit)) throw new MagpieError('OUTPUT_TOO_LARGE', `output record for port '${port}' is ${encoded.value.length} bytes, over the ${limit}-byte limit (max.message.bytes) of topic ${topic}`);
          messages.push([topic, msg, port]);
        }
        for (const [topic, msg, port] of messages) {
          this.push(topic, msg);
          this.counts.ports[port] = (this.counts.ports[port] ?? 0) + 1;
        }
        // Other ports (a changelog, a source's progress) are bookkeeping, not the stage's output.
        this.counts.out += messages.filter(([, , port]) => port === 'out').length;
        return;
      } catch (err) {
        if (isRetryable(err)) throw err;
        logger.warn({ offset: raw?.offset, code: errorCode(err), err: errorMessage(err) }, 'output cannot be written; dead-lettering the record');
        outcome = { kind: 'dead', code: errorCode(err), reason: `output could not be encoded: ${errorMessage(err)}` };
      }
    }
    if (outcome.kind === 'reject') {
      // Debug only: a filter stage rejects by design, often most of its input.
      logger.debug({ offset: raw?.offset, rule: outcome.rule, reason: outcome.reason }, 'record rejected');
      this.push(target.rejects, await rejectMessage(serde, target, outcome, outcome.record ?? input, raw));
      this.counts.rejected++;
    } else if (raw) {
      this.push(target.deadLetter, await deadLetterMessage(serde, target, raw, outcome.code, outcome.reason, 'attempts' in outcome ? outcome.attempts ?? 1 : 1));
      this.counts.deadLettered++;
    } else {
      // A source has no input bytes to keep: what it could not make is a reject with the reason.
      this.push(target.rejects, await rejectMessage(serde, target, { rule: `dead:${outcome.code}`, reason: outcome.reason }, input));
      this.counts.rejected++;
    }
  }

  routed(inputs: number): RoutedBatch {
    return { byTopic: this.byTopic, counts: { ...this.counts, in: inputs } };
  }
}

/** The reject record of one outcome: the rule, the record as JSON and, for consumed input, where it came from. */
export async function rejectMessage(serde: RecordSerde, target: Pick<RouteTarget, 'name' | 'rejects'>, outcome: { rule: string; reason: string }, record: unknown, raw?: RawRecord): Promise<OutboundMessage> {
  const value = {
    stage: target.name,
    rule: outcome.rule,
    // Reasons quote errors, and an error may quote a credential (a server echoing the API key).
    reason: scrubRegistered(outcome.reason),
    uuid: uuidOf(record) ?? null,
    record_json: safeJson(record),
    source_topic: raw?.topic ?? null,
    source_partition: raw?.partition ?? null,
    source_offset: raw ? Number(raw.offset) : null,
    rejected_at: Date.now(),
  };
  const encoded = await serde.encode('magpie.Rejected', value, target.rejects);
  return { key: raw?.key ?? null, value: encoded.value, headers: encoded.headers };
}

export async function deadLetterMessage(serde: RecordSerde, target: Pick<RouteTarget, 'name' | 'deadLetter' | 'messageLimits'>, raw: RawRecord, code: string, reason: string, attempts: number): Promise<OutboundMessage> {
  // The dead letter must itself fit in a Kafka record: an oversized original is cut, and the reason says so.
  const room = messageLimit(target, target.deadLetter) - 16_384;
  const cut = raw.value !== null && raw.value.length > room;
  const value = {
    stage: target.name,
    code,
    reason: scrubRegistered(cut ? `${reason} (original cut from ${raw.value!.length} to ${room} bytes)` : reason),
    source_topic: raw.topic,
    source_partition: raw.partition,
    source_offset: Number(raw.offset),
    source_key: raw.key,
    source_headers: raw.headers,
    original: cut ? raw.value!.subarray(0, room) : raw.value,
    attempts,
    failed_at: Date.now(),
  };
  const encoded = await serde.encode('magpie.DeadLetter', value, target.deadLetter);
  return { key: raw.key, value: encoded.value, headers: encoded.headers };
}

/**
 * Calls the stage until every record has a final outcome. Only records that failed are called again, alone
 * or with the other failed ones; finished siblings keep their outcome.
 * - A non-retryable failure dead-letters its record at once. When the whole call threw it, the records are
 *   tried one by one first, so one poison record cannot take its siblings down.
 * - A retryable failure (timeout, 5xx) is retried with backoff. A record that keeps failing while the stage's
 *   dependencies answer other records (a bad record) spends its own budget, `deadLetterAfterAttempts`, and is
 *   dead-lettered past it. While the dependency answers nobody (an outage) the shared circuit breaker opens,
 *   every attempt waits for it, and no record's budget is spent: records wait for recovery, never burnt.
 */
async function processWithRetries<I, O>(records: InputRecord<I>[], process: ProcessFn<I, O>, target: RouteTarget, ctx: StageContext, breaker: CircuitBreaker | undefined): Promise<FinalOutcome<O>[]> {
  const final: (FinalOutcome<O> | undefined)[] = new Array(records.length);
  const attempts = new Array<number>(records.length).fill(0);
  /** Failed at least once while the dependency answered another record: the record is at fault, not the server. */
  const suspect = new Array<boolean>(records.length).fill(false);
  let pending = records.map((_, i) => i);
  for (let round = 1; pending.length > 0; round++) {
    await breaker?.acquire(ctx.signal);
    let outcomes: Outcome<O>[];
    try {
      outcomes = await process(pending.map((i) => records[i]!), ctx);
      if (outcomes.length !== pending.length) {
        throw new MagpieError('STAGE_CONTRACT', `stage ${target.name} returned ${outcomes.length} outcomes for ${pending.length} records`);
      }
    } catch (err) {
      if (ctx.signal.aborted) {
        breaker?.release();
        throw err;
      }
      if (!isRetryable(err) && pending.length > 1) {
        // The call as a whole failed on its input: find the records at fault one by one.
        breaker?.release();
        ctx.logger.warn({ records: pending.length, code: errorCode(err), err: errorMessage(err) }, 'batch failed; isolating records one by one');
        for (const i of pending) final[i] = (await processWithRetries([records[i]!], process, target, ctx, breaker))[0];
        break;
      }
      outcomes = pending.map(() => ({ kind: 'failed', error: err }));
    }
    const retry: number[] = [];
    let answered = false;
    outcomes.forEach((outcome, j) => {
      const i = pending[j]!;
      if (outcome.kind !== 'failed') {
        answered = true;
        final[i] = outcome;
      } else if (!isRetryable(outcome.error)) {
        // The dependency answered; the record is at fault.
        answered = true;
        ctx.logger.warn({ offset: records[i]!.offset, code: errorCode(outcome.error), err: errorMessage(outcome.error) }, 'record failed; dead-lettering it');
        final[i] = { kind: 'dead', code: errorCode(outcome.error), reason: errorMessage(outcome.error), attempts: attempts[i]! + 1 };
      } else {
        attempts[i]!++;
        retry.push(j);
      }
    });
    if (answered) {
      breaker?.success();
      for (const j of retry) suspect[pending[j]!] = true;
    } else if (retry.every((j) => suspect[pending[j]!])) {
      // Only records already known to fail alone failed again: says nothing about the server.
      breaker?.release();
    } else {
      breaker?.failure();
    }
    const limit = target.deadLetterAfterAttempts;
    const next: number[] = [];
    for (const j of retry) {
      const i = pending[j]!;
      const err = (outcomes[j] as { error: unknown }).error;
      if (limit > 0 && attempts[i]! >= limit && suspect[i] && (breaker?.state ?? 'closed') === 'closed') {
        ctx.logger.error({ offset: records[i]!.offset, attempts: attempts[i], code: errorCode(err), err: errorMessage(err) }, 'record kept failing while others succeeded; dead-lettering it');
        final[i] = { kind: 'dead', code: errorCode(err), reason: `${errorMessage(err)} (after ${attempts[i]} attempts)`, attempts: attempts[i]! };
      } else {
        next.push(i);
      }
    }
    if (next.length > 0) {
      const first = retry.length > 0 ? (outcomes[retry[0]!] as { error: unknown }).error : undefined;
      const delay = backoffDelay(Math.min(round, 16), target.retry);
      const level = round >= target.retry.attempts ? 'error' : 'warn';
      ctx.logger[level]({ records: next.length, round, delayMs: delay, code: errorCode(first), err: errorMessage(first) }, 'retryable failure; retrying the failed records');
      await sleepWithHeartbeat(delay, ctx);
    }
    pending = next;
  }
  return final as FinalOutcome<O>[];
}

async function sleepWithHeartbeat(ms: number, ctx: StageContext): Promise<void> {
  const step = 2_000;
  for (let left = ms; left > 0; left -= step) {
    await sleep(Math.min(step, left), ctx.signal);
    await ctx.heartbeat();
  }
}

function uuidOf(value: unknown): string | undefined {
  if (value && typeof value === 'object' && 'uuid' in value && typeof (value as { uuid: unknown }).uuid === 'string') return (value as { uuid: string }).uuid;
  return undefined;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value ?? null, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('base64') : v));
  } catch {
    return '"[unserialisable]"';
  }
}
