import type { CircuitBreaker } from '../core/circuit-breaker.js';
import { errorCode, errorMessage, isRetryable, MagpieError } from '../core/errors.js';
import { scrubRegistered, type Logger } from '../core/logger.js';
import { backoffDelay, sleep } from '../core/retry.js';
import type { RecordSerde } from '../serde/serde.js';
import type { SchemaName } from '../serde/schemas.js';
import type { InputRecord, Outcome, StageContext } from '../processors/stage.js';
import type { RetryConfig } from '../topology/schema.js';

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

export interface OutboundMessage {
  key: string | Buffer | null;
  value: Buffer;
  headers: Record<string, string>;
}

export interface RoutedBatch {
  /** Topic → messages, in input order. */
  byTopic: Map<string, OutboundMessage[]>;
  counts: { in: number; out: number; rejected: number; deadLettered: number };
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
  deadLetterAfterAttempts: number;
  /** Largest record the broker accepts (message.max.bytes); bigger outputs are dead-lettered, not sent. */
  maxMessageBytes?: number;
}

/** Kafka's default message.max.bytes less room for the batch header. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_000_000;

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

/**
 * Decode → process (with retries) → encode, for one chunk of one partition. Pure with respect to Kafka:
 * the caller sends `byTopic` and commits the offsets in one step. Every input ends in exactly one of:
 * outputs, a reject record, a dead-letter record; or the whole call throws (nothing may be committed).
 * `breaker`, shared by the chunks of a stage, holds every attempt back while the stage's calls keep failing.
 */
export async function routeBatch<I, O>(
  raws: RawRecord[],
  process: ProcessFn<I, O>,
  serde: RecordSerde,
  target: RouteTarget,
  ctx: StageContext,
  breaker?: CircuitBreaker,
): Promise<RoutedBatch> {
  const logger = ctx.logger;
  const byTopic = new Map<string, OutboundMessage[]>();
  const counts = { in: raws.length, out: 0, rejected: 0, deadLettered: 0 };
  const push = (topic: string, msg: OutboundMessage) => {
    const list = byTopic.get(topic);
    if (list) list.push(msg);
    else byTopic.set(topic, [msg]);
  };

  // One slot per input: the outcome once known.
  const outcomes: (Outcome<O> | { kind: 'dead'; code: string; reason: string; attempts?: number })[] = new Array(raws.length);
  const decoded: { index: number; record: InputRecord<I> }[] = [];
  const inputValues: unknown[] = new Array(raws.length);
  for (let i = 0; i < raws.length; i++) {
    const raw = raws[i]!;
    if (!target.inputSchema) throw new Error(`stage ${target.name} has no input schema`);
    try {
      const value = await serde.decode<I>(target.inputSchema, raw.value, raw.headers);
      inputValues[i] = value;
      decoded.push({
        index: i,
        record: { value, key: raw.key?.toString() ?? null, headers: raw.headers, topic: raw.topic, partition: raw.partition, offset: raw.offset, timestamp: raw.timestamp },
      });
    } catch (err) {
      if (isRetryable(err)) throw err;
      logger.warn({ offset: raw.offset, code: errorCode(err), err: errorMessage(err) }, 'cannot decode record; dead-lettering it');
      outcomes[i] = { kind: 'dead', code: errorCode(err), reason: errorMessage(err) };
    }
  }

  if (decoded.length > 0) {
    const results = await processWithRetries(decoded.map((d) => d.record), process, target, ctx, breaker);
    results.forEach((outcome, j) => {
      outcomes[decoded[j]!.index] = outcome;
    });
  }

  for (let i = 0; i < raws.length; i++) {
    const raw = raws[i]!;
    let outcome = outcomes[i]!;
    if (outcome.kind === 'emit') {
      try {
        const messages: [string, OutboundMessage][] = [];
        for (const rec of outcome.records) {
          const port = rec.port ?? 'out';
          const topic = target.ports[port];
          const schema = target.portSchemas[port];
          if (!topic || !schema) throw new MagpieError('STAGE_BAD_PORT', `stage ${target.name} emitted to unknown port '${port}'`);
          const encoded = await serde.encode(schema, rec.value, topic);
          const limit = target.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
          if (encoded.value.length > limit) throw new MagpieError('OUTPUT_TOO_LARGE', `output record for port '${port}' is ${encoded.value.length} bytes, over the ${limit}-byte limit of the broker`);
          const key = rec.key ?? raw.key ?? uuidOf(rec.value) ?? null;
          messages.push([topic, { key, value: encoded.value, headers: encoded.headers }]);
        }
        for (const [topic, msg] of messages) push(topic, msg);
        counts.out += messages.length;
        continue;
      } catch (err) {
        if (isRetryable(err)) throw err;
        logger.warn({ offset: raw.offset, code: errorCode(err), err: errorMessage(err) }, 'output cannot be written; dead-lettering the record');
        outcome = { kind: 'dead', code: errorCode(err), reason: `output could not be encoded: ${errorMessage(err)}` };
      }
    }
    if (outcome.kind === 'reject') {
      // Debug only: a filter stage rejects by design, often most of its input.
      logger.debug({ offset: raw.offset, rule: outcome.rule, reason: outcome.reason }, 'record rejected');
      push(target.rejects, await rejectMessage(serde, target, outcome, outcome.record ?? inputValues[i], raw));
      counts.rejected++;
    } else if (outcome.kind === 'dead') {
      push(target.deadLetter, await deadLetterMessage(serde, target, raw, outcome.code, outcome.reason, 'attempts' in outcome ? outcome.attempts ?? 1 : 1));
      counts.deadLettered++;
    }
  }
  return { byTopic, counts };
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

export async function deadLetterMessage(serde: RecordSerde, target: Pick<RouteTarget, 'name' | 'deadLetter' | 'maxMessageBytes'>, raw: RawRecord, code: string, reason: string, attempts: number): Promise<OutboundMessage> {
  // The dead letter must itself fit in a Kafka record: an oversized original is cut, and the reason says so.
  const room = (target.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES) - 16_384;
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
 * Retryable failures (server down, timeouts) retry the whole batch with capped backoff, and go on retrying
 * while `deadLetterAfterAttempts` is 0: consumption waits for recovery instead of burning records.
 * A non-retryable failure is isolated by processing records one by one; only the ones that still fail are dead.
 * Every attempt first passes the breaker: while it is open, attempts wait and only a probe goes ahead.
 */
async function processWithRetries<I, O>(records: InputRecord<I>[], process: ProcessFn<I, O>, target: RouteTarget, ctx: StageContext, breaker: CircuitBreaker | undefined): Promise<Outcome<O>[]> {
  for (let attempt = 1; ; attempt++) {
    await breaker?.acquire(ctx.signal);
    try {
      const outcomes = await process(records, ctx);
      if (outcomes.length !== records.length) {
        throw new MagpieError('STAGE_CONTRACT', `stage ${target.name} returned ${outcomes.length} outcomes for ${records.length} records`);
      }
      breaker?.success();
      return outcomes;
    } catch (err) {
      if (ctx.signal.aborted) {
        breaker?.release();
        throw err;
      }
      if (!isRetryable(err)) {
        // The stage's dependencies answered; the records are at fault.
        breaker?.success();
        if (records.length === 1) {
          ctx.logger.warn({ offset: records[0]!.offset, code: errorCode(err), err: errorMessage(err) }, 'record failed; dead-lettering it');
          return [{ kind: 'dead', code: errorCode(err), reason: errorMessage(err) }];
        }
        ctx.logger.warn({ records: records.length, code: errorCode(err), err: errorMessage(err) }, 'batch failed; isolating records one by one');
        const out: Outcome<O>[] = [];
        for (const record of records) out.push(...(await processWithRetries([record], process, target, ctx, breaker)));
        return out;
      }
      breaker?.failure();
      const limit = target.deadLetterAfterAttempts;
      if (limit > 0 && attempt >= limit) {
        ctx.logger.error({ attempts: attempt, code: errorCode(err), err: errorMessage(err) }, 'retryable failure persisted; dead-lettering batch');
        return records.map(() => ({ kind: 'dead', code: errorCode(err), reason: `${errorMessage(err)} (after ${attempt} attempts)` }));
      }
      const delay = backoffDelay(attempt, target.retry);
      const level = attempt >= target.retry.attempts ? 'error' : 'warn';
      ctx.logger[level]({ attempt, delayMs: delay, code: errorCode(err), err: errorMessage(err) }, 'retryable failure; retrying batch');
      await sleepWithHeartbeat(delay, ctx);
    }
  }
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
