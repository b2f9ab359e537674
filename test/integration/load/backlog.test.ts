/**
 * Load: a backlog of 200,000 small records through a pass-through `magpie run` process. Prints throughput and
 * the stage process's peak resident memory after 50k and after 200k records, and checks that memory stays
 * bounded (it must not grow with the backlog) and that every record came out exactly once.
 * Figures, not a timed assertion: the machine is shared.
 */
import { pino } from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createSerde } from '../../../src/serde/serde.js';
import { Scenario } from '../../support/faults/scenario.js';
import { checkSink } from '../../support/faults/sink.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'fatal' });
const bootstrap = inject('kafkaBootstrap');
const serde = createSerde();
const BACKLOG = 200_000;
const CHECKPOINT = 50_000;
const MB = 1024 * 1024;

describe('load (real broker, real process)', () => {
  let s: Scenario | undefined;
  afterAll(async () => {
    await s?.close();
  });

  it(`moves a backlog of ${BACKLOG.toLocaleString('en')} records with memory that does not grow with it`, async () => {
    s = new Scenario({ name: 'backlog', brokers: bootstrap, topology: 'topologies/test/pass-through.yaml', stage: 'copy' }, serde, logger);
    const t0 = Date.now();
    await s.prepare(BACKLOG);
    const produced = Date.now();
    await s.tail.stop();
    const stage = s.spawn();
    await stage.started();
    const started = Date.now();

    const admin = s.kafka.admin();
    await admin.connect();
    const committed = async () => {
      const [offsets] = await admin.fetchOffsets({ groupId: s!.stage.groupId, topics: [s!.input] });
      return (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
    };
    let peakRss = 0;
    /** Peak RSS so far each time another CHECKPOINT records are done. */
    const peaks: { records: number; peak: number; seconds: number }[] = [];
    let done = 0;
    while (done < BACKLOG) {
      await new Promise((r) => setTimeout(r, 250));
      const mem = stage.memory();
      expect(mem, `stage process exited: ${stage.problems()}`).toBeDefined();
      peakRss = Math.max(peakRss, mem!.peak);
      done = await committed();
      while (done >= (peaks.length + 1) * CHECKPOINT) peaks.push({ records: (peaks.length + 1) * CHECKPOINT, peak: peakRss, seconds: (Date.now() - started) / 1000 });
      if (Date.now() - started > 240_000) throw new Error(`only ${done} of ${BACKLOG} records after 240 s`);
    }
    const seconds = (Date.now() - started) / 1000;
    await admin.disconnect();
    const check = await checkSink(s.kafka, serde, s.output, 'magpie.Instruction', s.sent.map((r) => r.uuid), { byKey: true });

    const first = peaks[0]!;
    const growth = peakRss - first.peak;
    console.log(
      [
        `\nLoad: ${BACKLOG.toLocaleString('en')} records (${(s.sent.length / ((produced - t0) / 1000)).toFixed(0)}/s produced by the test)`,
        `  pass-through: ${seconds.toFixed(1)} s, ${(BACKLOG / seconds).toFixed(0)} records/s (exactly-once, batch 500, 3 partitions)`,
        ...peaks.map((p) => `  peak RSS after ${p.records.toLocaleString('en').padStart(7)}: ${(p.peak / MB).toFixed(0)} MB (${p.seconds.toFixed(1)} s)`),
        `  growth from ${first.records.toLocaleString('en')} to ${BACKLOG.toLocaleString('en')}: ${(growth / MB).toFixed(1)} MB`,
        `  sink: ${check.out} records, ${check.duplicates} duplicates, ${check.lost.length} lost\n`,
      ].join('\n'),
    );
    expect(check.lost).toEqual([]);
    expect(check.duplicates).toBe(0);
    // Generous: four times the backlog may cost at most a quarter more memory (allocator and JIT noise).
    expect(peakRss).toBeLessThan(first.peak * 1.25 + 32 * MB);
  });
});
