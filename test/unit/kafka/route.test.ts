import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { InferenceError, RecordError } from '../../../src/core/errors.js';
import { CircuitBreaker } from '../../../src/core/circuit-breaker.js';
import { routeBatch, routeChain, type ProcessFn, type RawRecord, type RouteTarget } from '../../../src/kafka/route.js';
import type { InputRecord, Outcome, StageContext } from '../../../src/processors/stage.js';
import type { Instruction } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';

const serde = createSerde();
const target: RouteTarget = {
  name: 'test',
  inputSchema: 'magpie.Instruction',
  ports: { out: 'out-topic' },
  portSchemas: { out: 'magpie.Instruction' },
  rejects: 'rejects-topic',
  deadLetter: 'dlq-topic',
  retry: { attempts: 3, initialDelayMs: 1, maxDelayMs: 5 },
  deadLetterAfterAttempts: 0,
};

function instruction(i: number): Instruction {
  return {
    uuid: `u-${i}`,
    model: 'm',
    gen_input_configs: { temperature: 1, top_p: 1, max_tokens: 64, input_generator: 'test', seed: null, template_family: 'chatml', pre_query_template: '<|im_start|>user\n', system_prompt: null, stop: [], stop_token_ids: [], system_prompt_key: null, decoding_key: null },
    instruction: `question ${i}`,
    finish_reason: 'stop',
    instruction_tokens: 3,
    created_at: 1_700_000_000_000 + i,
  };
}

async function raws(n: number): Promise<RawRecord[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const enc = await serde.encode('magpie.Instruction', instruction(i));
      return { topic: 'in', partition: 0, offset: String(i), key: Buffer.from(`u-${i}`), value: enc.value, headers: enc.headers, timestamp: '0' };
    }),
  );
}

const ctx = (): StageContext => ({ logger: pino({ level: 'silent' }), signal: new AbortController().signal, heartbeat: async () => undefined });

async function decodeAll(topic: string, routed: Awaited<ReturnType<typeof routeBatch>>, schema: 'magpie.Instruction' | 'magpie.DeadLetter' | 'magpie.Rejected') {
  return Promise.all((routed.byTopic.get(topic) ?? []).map((m) => serde.decode<Record<string, unknown>>(schema, m.value, m.headers)));
}

describe('routeBatch', () => {
  it('passes every record through in order', async () => {
    const routed = await routeBatch(await raws(5), async (b: InputRecord<Instruction>[]) => b.map((r) => ({ kind: 'emit', records: [{ value: r.value }] })), serde, target, ctx());
    const out = await decodeAll('out-topic', routed, 'magpie.Instruction');
    expect(out.map((r) => r.uuid)).toEqual(['u-0', 'u-1', 'u-2', 'u-3', 'u-4']);
    expect(routed.counts).toEqual({ in: 5, out: 5, rejected: 0, deadLettered: 0, ports: { out: 5 } });
  });

  it('isolates a poison record into the dead-letter topic with its reason and original bytes', async () => {
    const input = await raws(4);
    const process = async (b: InputRecord<Instruction>[]): Promise<Outcome<Instruction>[]> => {
      if (b.some((r) => r.value.uuid === 'u-2')) throw new RecordError('BAD_THING', 'cannot handle u-2');
      return b.map((r) => ({ kind: 'emit', records: [{ value: r.value }] }));
    };
    const routed = await routeBatch(input, process, serde, target, ctx());
    expect((await decodeAll('out-topic', routed, 'magpie.Instruction')).map((r) => r.uuid)).toEqual(['u-0', 'u-1', 'u-3']);
    const dead = await decodeAll('dlq-topic', routed, 'magpie.DeadLetter');
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ stage: 'test', code: 'BAD_THING', reason: 'cannot handle u-2', source_topic: 'in', source_partition: 0, source_offset: 2 });
    expect(Buffer.compare(dead[0]!.original as Buffer, input[2]!.value!)).toBe(0);
  });

  it('dead-letters bytes that are not Avro without calling the stage for them', async () => {
    const input = await raws(2);
    input.push({ ...input[0]!, offset: '2', value: Buffer.from('not avro at all, just text') });
    let seen = 0;
    const routed = await routeBatch(input, async (b: InputRecord<Instruction>[]) => ((seen += b.length), b.map((r) => ({ kind: 'emit' as const, records: [{ value: r.value }] }))), serde, target, ctx());
    expect(seen).toBe(2);
    const dead = await decodeAll('dlq-topic', routed, 'magpie.DeadLetter');
    expect(dead[0]).toMatchObject({ code: expect.stringMatching(/^SERDE_/), source_offset: 2 });
  });

  it('writes rejects with the rule and the record', async () => {
    const routed = await routeBatch(await raws(2), async (b: InputRecord<Instruction>[]) => b.map((r, i) => (i === 1 ? { kind: 'reject' as const, rule: 'too_short', reason: 'instruction shorter than 10 characters' } : { kind: 'emit' as const, records: [{ value: r.value }] })), serde, target, ctx());
    const rejects = await decodeAll('rejects-topic', routed, 'magpie.Rejected');
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ stage: 'test', rule: 'too_short', uuid: 'u-1', source_offset: 1 });
    expect(JSON.parse(rejects[0]!.record_json as string)).toMatchObject({ uuid: 'u-1', instruction: 'question 1' });
  });

  it('retries a retryable failure and succeeds without dead-lettering', async () => {
    let calls = 0;
    const routed = await routeBatch(await raws(3), async (b: InputRecord<Instruction>[]) => {
      if (++calls < 3) throw new InferenceError('INFERENCE_HTTP', 'server said 503', { retryable: true });
      return b.map((r) => ({ kind: 'emit' as const, records: [{ value: r.value }] }));
    }, serde, target, ctx());
    expect(calls).toBe(3);
    expect(routed.counts).toEqual({ in: 3, out: 3, rejected: 0, deadLettered: 0, ports: { out: 3 } });
  });

  it('retries only the record that failed, and dead-letters it after its own budget while its siblings are answered', async () => {
    const calls: string[][] = [];
    const timeout = new InferenceError('INFERENCE_TIMEOUT', 'timed out', { retryable: true });
    const routed = await routeBatch(await raws(4), async (b: InputRecord<Instruction>[]) => {
      calls.push(b.map((r) => r.value.uuid));
      return b.map((r): Outcome<Instruction> => (r.value.uuid === 'u-2' ? { kind: 'failed', error: timeout } : { kind: 'emit', records: [{ value: r.value }] }));
    }, serde, { ...target, deadLetterAfterAttempts: 3 }, ctx());
    // The first call has every record; each retry has only the failed one.
    expect(calls).toEqual([['u-0', 'u-1', 'u-2', 'u-3'], ['u-2'], ['u-2']]);
    expect((await decodeAll('out-topic', routed, 'magpie.Instruction')).map((r) => r.uuid)).toEqual(['u-0', 'u-1', 'u-3']);
    const dead = await decodeAll('dlq-topic', routed, 'magpie.DeadLetter');
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ code: 'INFERENCE_TIMEOUT', source_offset: 2, attempts: 3 });
    expect(dead[0]!.reason).toMatch(/after 3 attempts/);
  });

  it('spends no budget while every record fails (an outage): the records wait and go through on recovery', async () => {
    let call = 0;
    const breaker = new CircuitBreaker({ failureThreshold: 2, coolDownMs: 5, maxCoolDownMs: 20 });
    const routed = await routeBatch(await raws(3), async (b: InputRecord<Instruction>[]) => {
      // Down for the first six calls, for everyone.
      if (++call <= 6) return b.map(() => ({ kind: 'failed' as const, error: new InferenceError('INFERENCE_CONNECTION', 'refused', { retryable: true }) }));
      return b.map((r) => ({ kind: 'emit' as const, records: [{ value: r.value }] }));
    }, serde, { ...target, deadLetterAfterAttempts: 2 }, ctx(), breaker);
    breaker.dispose();
    expect(call).toBe(7);
    expect(routed.counts).toEqual({ in: 3, out: 3, rejected: 0, deadLettered: 0, ports: { out: 3 } });
  });

  it('dead-letters an output that does not match its schema instead of failing the batch', async () => {
    const routed = await routeBatch(await raws(2), async (b: InputRecord<Instruction>[]) => b.map((r, i) => ({ kind: 'emit' as const, records: [{ value: i === 0 ? { ...r.value, instruction: 42 } : r.value }] })), serde, target, ctx());
    expect(routed.counts).toMatchObject({ out: 1, deadLettered: 1 });
    const dead = await decodeAll('dlq-topic', routed, 'magpie.DeadLetter');
    expect(dead[0]!.reason).toMatch(/instruction/);
  });

  it('rejects a stage that returns the wrong number of outcomes', async () => {
    const routed = await routeBatch(await raws(2), async () => [], serde, target, ctx());
    expect(routed.counts.deadLettered).toBe(2);
    const dead = await decodeAll('dlq-topic', routed, 'magpie.DeadLetter');
    expect(dead[0]!.code).toBe('STAGE_CONTRACT');
  });
});

describe('routeBatch size limits', () => {
  it('cuts the original of a dead letter to fit the dead-letter topic, and says so', async () => {
    const input = await raws(1);
    input[0] = { ...input[0]!, value: Buffer.alloc(40_000, 1) };
    const routed = await routeBatch(input, async () => [], serde, { ...target, messageLimits: { 'dlq-topic': 30_000 } }, ctx());
    const [dead] = await decodeAll('dlq-topic', routed, 'magpie.DeadLetter');
    expect(dead!.reason).toMatch(/original cut from 40000 to 13616 bytes/);
    expect((dead!.original as Buffer).length).toBe(13_616);
  });

  it('dead-letters an output larger than the broker accepts, with the size in the reason', async () => {
    const routed = await routeBatch(await raws(2), async (b: InputRecord<Instruction>[]) => b.map((r, i) => ({ kind: 'emit' as const, records: [{ value: i === 1 ? { ...r.value, instruction: 'x'.repeat(5_000) } : r.value }] })), serde, { ...target, messageLimits: { 'out-topic': 3_000 } }, ctx());
    expect(routed.counts).toMatchObject({ out: 1, deadLettered: 1 });
    const dead = await decodeAll('dlq-topic', routed, 'magpie.DeadLetter');
    expect(dead[0]).toMatchObject({ code: 'OUTPUT_TOO_LARGE', source_offset: 1 });
    expect(dead[0]!.reason).toMatch(/over the 3000-byte limit \(max.message.bytes\) of topic out-topic/);
  });
});

describe('routeChain', () => {
  it('hands what a stage emits on out to the next in memory; rejects and dead letters stop a record at its stage', async () => {
    const upper: ProcessFn<unknown, unknown> = async (b) =>
      (b as InputRecord<Instruction>[]).map((r) => (r.value.uuid === 'u-1' ? { kind: 'reject', rule: 'first_rule', reason: 'stopped by the first stage' } : { kind: 'emit', records: [{ value: { ...r.value, instruction: r.value.instruction.toUpperCase() } }] }));
    const seenBySecond: string[] = [];
    const second: ProcessFn<unknown, unknown> = async (b) =>
      (b as InputRecord<Instruction>[]).map((r) => {
        seenBySecond.push(r.value.instruction);
        return r.value.uuid === 'u-3' ? { kind: 'failed', error: new RecordError('SECOND_FAILED', 'the second stage cannot take u-3') } : { kind: 'emit', records: [{ value: r.value }] };
      });
    const first = { ...target, name: 'first', ports: { out: 'between' }, rejects: 'rejects-topic', deadLetter: 'dlq-topic' };
    const routed = await routeChain(await raws(4), [{ process: upper, target: first }, { process: second, target: { ...target, name: 'second' } }], serde, ctx());
    // Nothing is written to the topic between the two stages.
    expect(routed.byTopic.has('between')).toBe(false);
    expect(seenBySecond).toEqual(['QUESTION 0', 'QUESTION 2', 'QUESTION 3']);
    expect((await decodeAll('out-topic', routed, 'magpie.Instruction')).map((r) => [r.uuid, r.instruction])).toEqual([['u-0', 'QUESTION 0'], ['u-2', 'QUESTION 2']]);
    expect((await decodeAll('rejects-topic', routed, 'magpie.Rejected')).map((r) => [r.stage, r.rule, r.uuid])).toEqual([['first', 'first_rule', 'u-1']]);
    expect((await decodeAll('dlq-topic', routed, 'magpie.DeadLetter')).map((d) => [d.stage, d.code, d.source_offset])).toEqual([['second', 'SECOND_FAILED', 3]]);
    expect(Object.fromEntries(routed.byStage!)).toEqual({
      first: { in: 4, out: 3, rejected: 1, deadLettered: 0, ports: { out: 3 } },
      second: { in: 3, out: 2, rejected: 0, deadLettered: 1, ports: { out: 2 } },
    });
    expect(routed.counts).toEqual({ in: 4, out: 2, rejected: 1, deadLettered: 1, ports: { out: 2 } });
  });
});
