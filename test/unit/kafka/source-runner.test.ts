import { afterEach, describe, expect, it } from 'vitest';
import { MagpieError } from '../../../src/core/errors.js';
import { StageMetrics } from '../../../src/core/metrics.js';
import { SourceRunner } from '../../../src/kafka/source-runner.js';
import { emitValue, failed, reject, type Outcome, type Source, type StageContext } from '../../../src/processors/stage.js';
import type { Instruction, Rejected } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { makeInstruction } from '../../support/records.js';
import { fakeKafka, RecordingCommitter, silent, target, until } from './fakes.js';

const serde = createSerde();

/** A source that hands out the batches it is given, one per call, then reports it is finished. */
class ListSource implements Source<Instruction> {
  readonly log: string[] = [];
  closed = false;
  constructor(
    private readonly batches: (Outcome<Instruction>[] | Error | 'block')[],
    readonly exclusive = false,
  ) {}
  async init(): Promise<void> {
    this.log.push('init');
  }
  async next(_max: number, ctx: StageContext): Promise<Outcome<Instruction>[]> {
    this.log.push('next');
    const item = this.batches.shift() ?? [];
    if (item === 'block') return new Promise((_, rejectCall) => ctx.signal.addEventListener('abort', () => rejectCall(ctx.signal.reason), { once: true }));
    if (item instanceof Error) throw item;
    return item;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const emitted = (...ids: number[]) => ids.map((i) => emitValue(makeInstruction(i), `k${i}`));

const runners: SourceRunner[] = [];
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stop(0)));
});

function runner(source: Source<unknown>, committer = new RecordingCommitter(), exactlyOnce = true) {
  const r = new SourceRunner(source, {
    kafka: fakeKafka().kafka, serde, logger: silent, metrics: new StageMetrics(), transactionalIdPrefix: 'demo.gen-source',
    target: target('gen', undefined), batchSize: 4, exactlyOnce, committer,
  });
  runners.push(r);
  return { runner: r, committer };
}

const keys = (committer: RecordingCommitter, topic: string) => committer.commits.flatMap((c) => (c.byTopic.get(topic) ?? []).map((m) => String(m.key)));

describe('SourceRunner', () => {
  it('fences its writer before init, then writes each batch in one commit until the source is finished', async () => {
    const source = new ListSource([emitted(0, 1), [...emitted(2), reject<Instruction>('empty', 'no text'), failed<Instruction>(new Error('template broke'))]]);
    const { runner: r, committer } = runner(source);
    const committed: unknown[] = [];
    r.on('committed', (e) => committed.push(e));
    await r.start();
    await r.finished();
    expect(committer.calls).toEqual([`fence ${r.writer}`, `commit ${r.writer}`, `commit ${r.writer}`]);
    expect(source.log).toEqual(['init', 'next', 'next', 'next']);
    // A plain source writes as its own instance: any number run side by side.
    expect(r.writer).not.toBe('exclusive');
    expect(keys(committer, 'gen.out')).toEqual(['k0', 'k1', 'k2']);
    // A source has no input bytes to dead-letter: what it could not make is a reject naming the failure.
    const rejects = await Promise.all(committer.commits[1]!.byTopic.get('rejects')!.map((m) => serde.decode<Rejected>('magpie.Rejected', m.value, m.headers)));
    expect(rejects.map((x) => [x.stage, x.rule, x.reason])).toEqual([
      ['gen', 'empty', 'no text'],
      ['gen', 'dead:PROCESS_FAILED', 'template broke'],
    ]);
    expect(committer.commits.every((c) => c.input === undefined && !c.byTopic.has('dead-letter'))).toBe(true);
    expect(committed).toHaveLength(2);
    expect(r.totals).toEqual({ out: 3, rejected: 2 });
  });

  it('asks again after a retryable failure of the source, and fails for good on any other', async () => {
    const flaky = new ListSource([new MagpieError('INFERENCE_TIMEOUT', 'slow', { retryable: true }), emitted(0)]);
    const { runner: ok, committer } = runner(flaky);
    await ok.start();
    await ok.finished();
    expect(keys(committer, 'gen.out')).toEqual(['k0']);

    const broken = new ListSource([new Error('no such file')]);
    const { runner: bad } = runner(broken);
    const fatal: unknown[] = [];
    bad.on('fatal', (err) => fatal.push(err));
    await bad.start();
    await expect(bad.finished()).rejects.toThrow('no such file');
    expect(fatal).toHaveLength(1);
  });

  it('keeps a batch whose write failed and writes the same records again after fencing in, never making it again', async () => {
    const source = new ListSource([emitted(0, 1)]);
    const committer = new RecordingCommitter();
    committer.failCommits(new Error('broker restarting'));
    const { runner: r } = runner(source, committer);
    await r.start();
    await r.finished();
    expect(committer.calls).toEqual([`fence ${r.writer}`, `commit ${r.writer}`, `fence ${r.writer}`, `commit ${r.writer}`]);
    expect(keys(committer, 'gen.out')).toEqual(['k0', 'k1']);
    expect(source.log.filter((l) => l === 'next')).toHaveLength(2);
  });

  it('stops producing when a newer instance of an exclusive source fences it, instead of fencing back', async () => {
    const source = new ListSource([emitted(0), emitted(1), emitted(2)], true);
    const committer = new RecordingCommitter();
    committer.failCommits(null, Object.assign(new Error('There is a newer producer with the same transactionalId'), { type: 'PRODUCER_FENCED' }));
    const { runner: r } = runner(source, committer);
    await r.start();
    await r.finished();
    expect(r.writer).toBe('exclusive');
    // The batch refused is not written, the source is not asked for more, and the runner does not fence back.
    expect(committer.fences).toEqual(['exclusive']);
    expect(keys(committer, 'gen.out')).toEqual(['k0']);
    expect(source.log).toEqual(['init', 'next', 'next']);
    expect(r.totals.out).toBe(1);
  });

  it('fences in again and goes on when a plain source is fenced (its own writer, nobody else has it)', async () => {
    const source = new ListSource([emitted(0)]);
    const committer = new RecordingCommitter();
    committer.failCommits(Object.assign(new Error('fenced'), { type: 'INVALID_PRODUCER_EPOCH' }));
    const { runner: r } = runner(source, committer);
    await r.start();
    await r.finished();
    expect(committer.fences).toEqual([r.writer, r.writer]);
    expect(keys(committer, 'gen.out')).toEqual(['k0']);
  });

  it('on stop, cancels a source waiting for its next batch and closes the source and the writer', async () => {
    const source = new ListSource([emitted(0), 'block']);
    const { runner: r, committer } = runner(source);
    await r.start();
    await until(() => source.log.filter((l) => l === 'next').length === 2, 'the source waiting for its second batch');
    await r.stop(10);
    await r.finished();
    expect(keys(committer, 'gen.out')).toEqual(['k0']);
    expect(source.closed).toBe(true);
    expect(committer.closed).toBe(true);
  });
});
