import { describe, expect, it } from 'vitest';
import { RecordError } from '../../../src/core/errors.js';
import { createKafka } from '../../../src/kafka/client.js';
import type { InputRecord, Processor } from '../../../src/processors/stage.js';
import type { DeadLetter, Instruction } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { runTopology } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile } from '../../../src/topology/load.js';
import { uniquePrefix } from '../../support/broker.js';
import { topologyTestContext } from '../../support/topology-run.js';
import { eventually, makeInstruction, produceRecords, readAll } from '../../support/records.js';

const { logger, bootstrap, track } = topologyTestContext();
const serde = createSerde();

async function setup(name: string) {
  const prefix = uniquePrefix(name);
  const topology = await loadTopologyFile('topologies/test/pass-through.yaml', { topicPrefix: prefix, brokers: [bootstrap] });
  const kafka = createKafka(topology.kafka, logger);
  return { prefix, topology, kafka, input: `${prefix}in`, output: `${prefix}out`, dlq: `${prefix}magpie.dead-letter` };
}

function uuids(records: { uuid: string }[]): string[] {
  return records.map((r) => r.uuid).sort();
}

describe('stage runner on a real broker', () => {
  it('moves 10,000 records through a pass-through stage with none lost and none duplicated', async () => {
    const t = await setup('pass10k');
    const run = await runTopology(t.topology, logger);
    track(run);
    const sent = Array.from({ length: 10_000 }, (_, i) => makeInstruction(i));
    await produceRecords(t.kafka, serde, t.input, 'magpie.Instruction', sent);
    await waitUntilDrained(run);
    const out = await readAll<Instruction>(t.kafka, serde, t.output, 'magpie.Instruction');
    expect(out).toHaveLength(10_000);
    expect(new Set(out.map((r) => r.uuid)).size).toBe(10_000);
    expect(uuids(out)).toEqual(uuids(sent));
    expect(out.find((r) => r.uuid === sent[1234]!.uuid)).toEqual(sent[1234]);
  });

  it('dead-letters a record the stage throws on, with its reason, while the rest flow on', async () => {
    const t = await setup('dlq');
    const poison = makeInstruction(7, 'POISON');
    const processor: Processor<Instruction, Instruction> = {
      process: async (batch: InputRecord<Instruction>[]) => {
        if (batch.some((r) => r.value.instruction === 'POISON')) throw new RecordError('TEST_POISON', 'this stage cannot handle POISON');
        return batch.map((r) => ({ kind: 'emit', records: [{ value: r.value }] }));
      },
    };
    const run = await runTopology(t.topology, logger, { processorOverrides: { copy: processor as Processor<unknown, unknown> } });
    track(run);
    const sent = Array.from({ length: 500 }, (_, i) => (i === 7 ? poison : makeInstruction(i)));
    await produceRecords(t.kafka, serde, t.input, 'magpie.Instruction', sent, { raw: [{ key: 'garbage', value: Buffer.from('\u0000not avro') }] });
    await waitUntilDrained(run);
    const out = await readAll<Instruction>(t.kafka, serde, t.output, 'magpie.Instruction');
    expect(uuids(out)).toEqual(uuids(sent.filter((r) => r !== poison)));
    const dead = await readAll<DeadLetter>(t.kafka, serde, t.dlq, 'magpie.DeadLetter');
    expect(dead).toHaveLength(2);
    const poisoned = dead.find((d) => d.code === 'TEST_POISON')!;
    expect(poisoned).toMatchObject({ stage: 'copy', reason: 'this stage cannot handle POISON', source_topic: t.input });
    expect(await serde.decode<Instruction>('magpie.Instruction', poisoned.original, poisoned.source_headers)).toEqual(poison);
    const garbage = dead.find((d) => d.code !== 'TEST_POISON')!;
    expect(garbage.code).toMatch(/^SERDE_/);
    expect(garbage.original?.toString()).toBe('\u0000not avro');
  });

  it('resumes from the committed offsets after a stop mid-stream, with nothing lost or duplicated', async () => {
    const t = await setup('restart');
    const slow: Processor<Instruction, Instruction> = {
      process: async (batch: InputRecord<Instruction>[]) => {
        // Slow enough that a stop finds most of the input still to do (a window works on 8 chunks at once).
        await new Promise((r) => setTimeout(r, 1_000));
        return batch.map((r) => ({ kind: 'emit', records: [{ value: r.value }] }));
      },
    };
    const sent = Array.from({ length: 3_000 }, (_, i) => makeInstruction(i));
    const smallBatches = { ...t.topology, stages: t.topology.stages.map((s) => ({ ...s, batchSize: 50 })) };
    const first = await runTopology(smallBatches, logger, { processorOverrides: { copy: slow as Processor<unknown, unknown> } });
    await produceRecords(t.kafka, serde, t.input, 'magpie.Instruction', sent);
    let committed = 0;
    first.runners.get('copy')!.on('committed', (e: { counts: { in: number } }) => (committed += e.counts.in));
    await eventually(() => committed >= 500, 60_000, 50);
    await first.stop(0);
    expect(committed).toBeLessThan(3_000);
    const second = await runTopology(smallBatches, logger, { processorOverrides: { copy: slow as Processor<unknown, unknown> } });
    track(second);
    await waitUntilDrained(second);
    const out = await readAll<Instruction>(t.kafka, serde, t.output, 'magpie.Instruction');
    expect(out).toHaveLength(3_000);
    expect(uuids(out)).toEqual(uuids(sent));
  });
});
