import { afterEach, describe, expect, it } from 'vitest';
import { StageMetrics } from '../../../src/core/metrics.js';
import { StageRunner, type StageRunnerOptions } from '../../../src/kafka/stage-runner.js';
import { BUFFERED_PER_SLOT } from '../../../src/kafka/partition-window.js';
import { emitValue, failed, reject, dead, type InputRecord, type Outcome, type Processor, type StageContext } from '../../../src/processors/stage.js';
import type { DeadLetter, Instruction, Rejected } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { makeInstruction } from '../../support/records.js';
import { deferred, fakeKafka, RecordingCommitter, silent, target, until, type FakeConsumer } from './fakes.js';

const serde = createSerde();
const INPUT = 'in';

/**
 * A processor whose calls the test answers: each call waits until the test releases it (or the stage stops),
 * then emits every record, or what `answer` says.
 */
class ScriptedProcessor implements Processor<Instruction, Instruction> {
  readonly calls: { offsets: string[]; signal: AbortSignal; release: () => void }[] = [];
  closed = false;
  constructor(
    private readonly gated: boolean,
    private readonly answer: (r: InputRecord<Instruction>, i: number) => Outcome<Instruction> = (r) => emitValue(r.value, r.key),
  ) {}

  async process(batch: InputRecord<Instruction>[], ctx: StageContext): Promise<Outcome<Instruction>[]> {
    const gate = deferred();
    this.calls.push({ offsets: batch.map((r) => r.offset), signal: ctx.signal, release: gate.resolve });
    if (this.gated) {
      await new Promise<void>((resolve, rejectCall) => {
        void gate.promise.then(resolve);
        ctx.signal.addEventListener('abort', () => rejectCall(ctx.signal.reason), { once: true });
      });
    }
    return batch.map((r, i) => this.answer(r, i));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Releases the call that got the record at `offset`. */
  release(offset: number): void {
    const call = this.calls.find((c) => c.offsets.includes(String(offset)));
    if (!call) throw new Error(`no call has offset ${offset}`);
    call.release();
  }
}

async function encoded(offsets: number[]) {
  return Promise.all(
    offsets.map(async (offset) => {
      const e = await serde.encode('magpie.Instruction', makeInstruction(offset));
      return { offset, value: e.value, headers: e.headers };
    }),
  );
}

const runners: StageRunner[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stop(0)));
});

async function started(processor: Processor<unknown, unknown>, options: Partial<StageRunnerOptions> & { committed?: Record<number, string> } = {}) {
  const { kafka, consumer, consumers, admin } = fakeKafka();
  for (const [p, offset] of Object.entries(options.committed ?? {})) admin.committed.set(Number(p), offset);
  const committer = new RecordingCommitter();
  const runner = new StageRunner(processor, {
    kafka, serde, logger: silent, metrics: new StageMetrics(), groupId: 'g', input: INPUT, target: target('copy'),
    batchSize: 2, window: 4, concurrency: 1, exactlyOnce: true, sessionTimeoutMs: 30_000, committer, ...options,
  });
  runners.push(runner);
  await runner.start();
  consumer.assign(INPUT, [0]);
  return { runner, consumer, consumers, committer, admin };
}

const deliver = async (consumer: FakeConsumer, offsets: number[], partition = 0) => consumer.deliver(INPUT, partition, await encoded(offsets));
const keysOf = (messages: { key: string | Buffer | null }[] | undefined) => (messages ?? []).map((m) => String(m.key));
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
/** Lets promise chains started by a release run to their end. */
const settle = () => new Promise((r) => setTimeout(r, 20));

describe('StageRunner', () => {
  it('commits chunks strictly in offset order, the ready ones together, whatever order they finish in', async () => {
    const processor = new ScriptedProcessor(true);
    const { consumer, committer } = await started(processor);
    await deliver(consumer, range(0, 8));
    await until(() => processor.calls.length === 4, 'four chunks of two in flight');
    expect(processor.calls.map((c) => c.offsets)).toEqual([['0', '1'], ['2', '3'], ['4', '5'], ['6', '7']]);

    processor.release(4);
    processor.release(2);
    await settle();
    // The oldest chunk is still out: nothing after it may be written.
    expect(committer.commits).toHaveLength(0);

    processor.release(0);
    await until(() => committer.commits.length === 1, 'the first three chunks committed');
    expect(committer.commits[0]!.input).toEqual({ groupId: 'g', topic: INPUT, partition: 0, nextOffset: '6' });
    expect(keysOf(committer.commits[0]!.byTopic.get('copy.out'))).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);

    processor.release(6);
    await until(() => committer.commits.length === 2, 'the last chunk committed');
    expect(committer.commits[1]!.input!.nextOffset).toBe('8');
    expect(keysOf(committer.commits[1]!.byTopic.get('copy.out'))).toEqual(['k6', 'k7']);
    // One transactional writer per input partition, fenced before the first chunk was taken.
    expect(committer.calls[0]).toBe('fence in-0');
    expect(new Set(committer.commits.map((c) => c.writer))).toEqual(new Set(['in-0']));
  });

  it('takes over a partition from the group\'s committed offset: records below it were committed by the previous owner', async () => {
    const processor = new ScriptedProcessor(false);
    const { consumer, committer } = await started(processor, { committed: { 0: '3' } });
    await deliver(consumer, range(0, 6));
    await until(() => committer.commits.length > 0 && committer.commits.at(-1)!.input!.nextOffset === '6', 'offsets 3-5 committed');
    expect(processor.calls.flatMap((c) => c.offsets).map(Number).sort()).toEqual([3, 4, 5]);
    expect(committer.commits.flatMap((c) => keysOf(c.byTopic.get('copy.out')))).toEqual(['k3', 'k4', 'k5']);
  });

  it('routes each outcome of a chunk: outputs, a reject, a failed record dead-lettered alone, a dead letter', async () => {
    const answers = (r: InputRecord<Instruction>, i: number): Outcome<Instruction> =>
      [emitValue(r.value, r.key), reject<Instruction>('too_short', 'shorter than 3 words'), failed<Instruction>(new Error('parser blew up')), dead<Instruction>('UNUSABLE', 'no instruction')][i]!;
    const processor = new ScriptedProcessor(false, answers);
    const { consumer, committer } = await started(processor, { batchSize: 4 });
    await deliver(consumer, range(0, 4));
    await until(() => committer.commits.length === 1, 'the chunk committed');
    const { byTopic, input } = committer.commits[0]!;
    expect(input!.nextOffset).toBe('4');
    expect(keysOf(byTopic.get('copy.out'))).toEqual(['k0']);
    const rejected = await serde.decode<Rejected>('magpie.Rejected', byTopic.get('rejects')![0]!.value, byTopic.get('rejects')![0]!.headers);
    expect(rejected).toMatchObject({ stage: 'copy', rule: 'too_short' });
    const letters = await Promise.all(byTopic.get('dead-letter')!.map((m) => serde.decode<DeadLetter>('magpie.DeadLetter', m.value, m.headers)));
    expect(letters.map((l) => [l.stage, l.source_offset, l.code])).toEqual([
      ['copy', 2, expect.any(String)],
      ['copy', 3, 'UNUSABLE'],
    ]);
    expect(letters[0]!.reason).toContain('parser blew up');
  });

  it('pauses a partition whose window is full and resumes it once a chunk is committed', async () => {
    const processor = new ScriptedProcessor(true);
    const { consumer, committer } = await started(processor, { window: 1 });
    await deliver(consumer, [0, 1]);
    await until(() => processor.calls.length === 1, 'one chunk in flight');
    expect(consumer.flow).toEqual([]);
    // Chunks of 2, window 1: the buffer's bound is BUFFERED_PER_SLOT chunks.
    await deliver(consumer, range(2, 2 + 2 * BUFFERED_PER_SLOT));
    expect(consumer.flow).toEqual(['pause 0']);
    processor.release(0);
    await until(() => processor.calls.length === 2, 'the next chunk started');
    expect(consumer.flow).toEqual(['pause 0', 'resume 0']);
    expect(committer.commits[0]!.input!.nextOffset).toBe('2');
  });

  it('on stop, lets the chunk in flight commit, drops what no chunk has taken, and closes everything', async () => {
    const processor = new ScriptedProcessor(true);
    const { runner, consumer, committer } = await started(processor, { window: 1 });
    await deliver(consumer, range(0, 4));
    await until(() => processor.calls.length === 1, 'one chunk in flight');
    const stopped = runner.stop(60_000);
    await settle();
    processor.release(0);
    await stopped;
    expect(committer.commits.map((c) => c.input!.nextOffset)).toEqual(['2']);
    // Records 2 and 3 were never processed: consumed again from offset 2 after a restart.
    expect(processor.calls).toHaveLength(1);
    expect(consumer.disconnected).toBe(true);
    expect(committer.closed).toBe(true);
    expect(processor.closed).toBe(true);
  });

  it('on stop, abandons a chunk that outlasts the grace period: cancelled, never committed', async () => {
    const processor = new ScriptedProcessor(true);
    const { runner, consumer, committer } = await started(processor);
    await deliver(consumer, [0, 1]);
    await until(() => processor.calls.length === 1, 'one chunk in flight');
    await runner.stop(10);
    expect(processor.calls[0]!.signal.aborted).toBe(true);
    expect(committer.commits).toHaveLength(0);
  });

  it('keeps the outputs of a failed commit and writes them again after fencing in, without processing again', async () => {
    const processor = new ScriptedProcessor(false);
    const { consumer, committer } = await started(processor);
    committer.failCommits(new Error('coordinator went away'));
    await deliver(consumer, [0, 1]);
    await until(() => committer.commits.length === 1, 'the chunk committed on the second attempt');
    expect(committer.calls).toEqual(['fence in-0', 'commit in-0', 'fence in-0', 'commit in-0']);
    expect(processor.calls).toHaveLength(1);
    expect(keysOf(committer.commits[0]!.byTopic.get('copy.out'))).toEqual(['k0', 'k1']);
  });

  it('after a commit whose answer was lost, writes nothing again until it has fenced in and read the partition: a commit that went through is not repeated', async () => {
    const processor = new ScriptedProcessor(true);
    const { consumer, committer, admin } = await started(processor);
    await deliver(consumer, [0, 1]);
    await until(() => processor.calls.length === 1, 'the chunk is processing');
    // The transaction commits on the broker, but its answer is lost with the broker; fencing in fails once.
    admin.committed.set(0, '2');
    committer.failCommits(new Error('connection to the coordinator closed'));
    committer.failFences(new Error('coordinator not available'));
    processor.release(0);
    await until(() => committer.calls.length === 4, 'fenced in again after the failed fence', 3_000);
    await settle();
    expect(committer.calls).toEqual(['fence in-0', 'commit in-0', 'fence in-0', 'fence in-0']);
    expect(committer.commits).toHaveLength(0);
    await deliver(consumer, [2, 3]);
    processor.release(2);
    await until(() => committer.commits.length === 1, 'the next chunk commits');
    expect(committer.commits[0]!.input?.nextOffset).toBe('4');
    expect(keysOf(committer.commits[0]!.byTopic.get('copy.out'))).toEqual(['k2', 'k3']);
  });

  it('after a failed commit, finding another owner committed past the chunk, drops the window instead of writing its later chunks again', async () => {
    const processor = new ScriptedProcessor(true);
    const { consumer, committer, admin } = await started(processor);
    await deliver(consumer, [0, 1, 2, 3]);
    await until(() => processor.calls.length === 2, 'both chunks are processing');
    // A zombie's view: another owner took the partition over and committed through offset 4 meanwhile.
    admin.committed.set(0, '4');
    committer.failCommits(new Error('producer fenced'));
    processor.release(0);
    await until(() => consumer.seeks.length === 1, 'the window is reset to the committed offset', 1_500);
    // The later chunk, committed by the other owner too, is cancelled, never written.
    expect(processor.calls[1]!.signal.aborted).toBe(true);
    await settle();
    expect(consumer.seeks).toEqual([{ partition: 0, offset: '4' }]);
    expect(committer.commits).toHaveLength(0);
    expect(committer.calls.filter((c) => c.startsWith('commit'))).toHaveLength(1);
  });

  it('resumes a partition it paused when the group takes it away, so it is fetched again if it comes back', async () => {
    const processor = new ScriptedProcessor(true);
    const { consumer } = await started(processor, { window: 1 });
    await deliver(consumer, range(0, 2 + 2 * BUFFERED_PER_SLOT));
    expect(consumer.flow).toEqual(['pause 0']);
    consumer.assign(INPUT, [1]);
    expect(consumer.flow).toEqual(['pause 0', 'resume 0']);
    consumer.assign(INPUT, [0, 1]);
    await deliver(consumer, [0, 1]);
    await until(() => processor.calls.length === 2, 'the partition given back is processed again');
  });

  it('replaces a consumer kafkajs gave up on (coordinator unreachable past its retries): chunks in flight go on, re-deliveries are skipped', async () => {
    const processor = new ScriptedProcessor(true);
    const { runner, consumer, consumers, committer } = await started(processor);
    const fatal: unknown[] = [];
    runner.on('fatal', (err) => fatal.push(err));
    await deliver(consumer, [0, 1]);
    await until(() => processor.calls.length === 1, 'one chunk in flight');
    consumer.emit(consumer.events.CRASH, { payload: { error: Object.assign(new Error('Failed to find group coordinator'), { name: 'KafkaJSNonRetriableError' }), restart: false } });
    await until(() => consumers.length === 2 && consumers[1]!.eachBatch !== undefined, 'a new consumer consuming');
    expect(consumer.disconnected).toBe(true);
    const second = consumers[1]!;
    second.assign(INPUT, [0]);
    // The chunk fetched by the first consumer still commits; the new one fetches from the committed offset.
    processor.release(0);
    await until(() => committer.commits.length === 1, 'the chunk in flight committed');
    await deliver(second, [0, 1, 2, 3]);
    await until(() => processor.calls.length === 2, 'the next chunk');
    expect(processor.calls[1]!.offsets).toEqual(['2', '3']);
    expect(fatal).toEqual([]);
  });

  it('abandons the work of a partition the group gives to another member', async () => {
    const processor = new ScriptedProcessor(true);
    const { consumer, committer } = await started(processor);
    await deliver(consumer, [0, 1]);
    await until(() => processor.calls.length === 1, 'one chunk in flight');
    consumer.assign(INPUT, []);
    expect(processor.calls[0]!.signal.aborted).toBe(true);
    processor.release(0);
    await settle();
    expect(committer.commits).toHaveLength(0);
  });

  it('runs chained stages in the same chunk and commit: the head\'s output topic is not written, a follower\'s reject stops the record', async () => {
    const head = new ScriptedProcessor(false);
    const follower = new ScriptedProcessor(false, (r, i) => (i === 1 ? reject<Instruction>('odd_one', 'second of its chunk') : emitValue(r.value, r.key)));
    const { consumer, committer, admin } = await started(head, { followers: [{ processor: follower as Processor<unknown, unknown>, target: target('tag') }] });
    // Size limits are read for the topics the chain writes: not for copy.out, which it hands over in memory.
    expect([...new Set(admin.described)].sort()).toEqual(['dead-letter', 'rejects', 'tag.out']);
    await deliver(consumer, [0, 1]);
    await until(() => committer.commits.length === 1, 'the chain committed its chunk');
    const { byTopic } = committer.commits[0]!;
    expect([...byTopic.keys()].sort()).toEqual(['rejects', 'tag.out']);
    expect(keysOf(byTopic.get('tag.out'))).toEqual(['k0']);
    const rejected = await serde.decode<Rejected>('magpie.Rejected', byTopic.get('rejects')![0]!.value, byTopic.get('rejects')![0]!.headers);
    expect(rejected.stage).toBe('tag');
    expect(follower.calls.map((c) => c.offsets)).toEqual([['0', '1']]);
  });
});
