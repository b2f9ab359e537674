import type { Conversation } from '../../src/serde/records.generated.js';
import type { InputRecord, Processor, StageContext } from '../../src/processors/stage.js';
import { filter } from '../../src/processors/filter.js';
import { loadTopologyFile } from '../../src/topology/load.js';
import { compare, measurement, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';
import { taggedConversation } from '../lib/records.js';

const BATCH = 500;

/** The Magpie-Pro-300K-Filtered rules written out by hand: what the filter stage would cost with no rule engine. */
function handWritten(r: Conversation): boolean {
  return (
    (r.input_quality === 'good' || r.input_quality === 'excellent') &&
    r.language === 'en' &&
    r.instruct_reward !== null && r.instruct_reward > -10 &&
    r.is_duplicate === false &&
    r.response_finish_reason !== null && r.response_finish_reason !== 'length' &&
    r.instruction_length >= 10 && r.instruction_length <= 20_000 &&
    r.tag_failures.length === 0
  );
}

export const filterSuite: Suite = {
  name: 'filter',
  description: 'filter stage records/s with the magpie-pro-filtered rules vs the same rules hand-written in plain TypeScript',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const topology = await loadTopologyFile('topologies/magpie-pro-filtered.yaml', { env: {} });
    const stage = topology.stages.find((s) => s.type === 'filter')!;
    const processor = filter.create(stage.config as never, undefined as never) as Processor<Conversation, Conversation>;
    const batch: InputRecord<Conversation>[] = Array.from({ length: BATCH }, (_, i) => ({
      value: taggedConversation(i), key: null, headers: {}, topic: 'bench', partition: 0, offset: String(i), timestamp: '0',
    }));
    const stageCtx = { logger: ctx.logger, signal: new AbortController().signal, heartbeat: async () => undefined } satisfies StageContext;
    const outcomes = await processor.process(batch, stageCtx);
    const passed = outcomes.filter((o) => o.kind === 'emit').length;
    const expected = batch.filter((r) => handWritten(r.value)).length;
    if (passed !== expected) throw new Error(`filter passed ${passed} of ${BATCH}, the hand-written rules ${expected}: the baseline does not do the same work`);
    const r = await compare(
      () => processor.process(batch, stageCtx),
      () => batch.map((rec) => (handWritten(rec.value) ? { kind: 'emit', records: [{ value: rec.value, key: rec.key }] } : { kind: 'reject' })),
      BATCH,
      { rounds: ctx.quick ? 2 : 5, roundMs: ctx.quick ? 300 : 1_000 },
    );
    ctx.progress(`filter: ${r.candidate.toFixed(0)} records/s vs hand-written ${r.baseline.toFixed(0)}/s`);
    return [measurement('filter', `filter stage, ${stage.config['rules'] ? (stage.config['rules'] as unknown[]).length : 0} rules (${passed}/${BATCH} pass)`, r.candidate, 'records/s', { name: 'same rules hand-written', value: r.baseline })];
  },
};
