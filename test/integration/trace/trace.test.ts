/**
 * `magpie trace`: one record followed by its uuid through a running topology on the real broker, to its output,
 * and a broken one to its dead letter.
 */
import { describe, expect, it } from 'vitest';
import { createKafka } from '../../../src/kafka/client.js';
import { createKafkaSerde } from '../../../src/kafka/schema-store.js';
import type { Instruction } from '../../../src/serde/records.generated.js';
import { runTopology } from '../../../src/topology/build.js';
import { loadTopologyFile } from '../../../src/topology/load.js';
import { describeTrace, traceRecord } from '../../../src/topology/trace.js';
import { uniquePrefix } from '../../support/broker.js';
import { topologyTestContext } from '../../support/topology-run.js';
import { eventually, makeInstruction, produceRecords, readAll } from '../../support/records.js';

const { logger, bootstrap, track } = topologyTestContext();

describe('trace a record across stages (real broker)', () => {
  it('prints each topic, partition and offset a record went through, and where a broken one was dead-lettered', async () => {
    const prefix = uniquePrefix('trace');
    const topology = await loadTopologyFile('topologies/test/pass-through.yaml', { topicPrefix: prefix, brokers: [bootstrap] });
    const kafka = createKafka(topology.kafka, logger);
    const serde = createKafkaSerde(kafka, topology.serde, logger);
    const stage = topology.stages[0]!;
    const run = track(await runTopology(topology, logger));
    const good = [makeInstruction(1), makeInstruction(2), makeInstruction(3)];
    const broken = makeInstruction(4).uuid;
    const valid = await serde.encode('magpie.Instruction', good[0]!, stage.input!);
    await produceRecords(kafka, serde, stage.input!, 'magpie.Instruction', good, { raw: [{ key: broken, value: Buffer.from('not avro at all'), headers: valid.headers }] });
    await eventually(async () => (await readAll<Instruction>(kafka, serde, stage.ports.out!, 'magpie.Instruction')).length === good.length, 60_000, 1_000);

    const hops = await traceRecord(kafka, serde, topology, good[1]!.uuid);
    expect(hops.map((h) => [h.stage, h.kind, h.topic])).toEqual([
      ['(input)', 'output', stage.input],
      ['copy', 'output', stage.ports.out],
    ]);
    for (const h of hops) {
      expect(h.offset).toMatch(/^\d+$/);
      expect(h.timestamp).toBeGreaterThan(0);
    }
    expect(hops[1]!.timestamp).toBeGreaterThanOrEqual(hops[0]!.timestamp);
    const text = describeTrace(good[1]!.uuid, hops);
    expect(text).toContain(`${stage.ports.out} [${hops[1]!.partition}@${hops[1]!.offset}]`);

    const dead = await traceRecord(kafka, serde, topology, broken);
    expect(dead.map((h) => [h.stage, h.kind, h.topic])).toEqual([
      ['(input)', 'output', stage.input],
      ['copy', 'dead-letter', stage.deadLetter],
    ]);
    expect(dead[1]!.detail).toMatch(/^SERDE_CORRUPT: /);
    expect(describeTrace(broken, dead)).toContain('✗ dead-lettered SERDE_CORRUPT');

    expect(await traceRecord(kafka, serde, topology, 'no-such-uuid')).toEqual([]);
    await run.stop(0);
    await serde.close();
  });
});
