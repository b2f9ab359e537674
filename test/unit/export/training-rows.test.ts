import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { describeSummary, TrainingRows } from '../../../src/export/training-rows.js';
import type { RawRecord } from '../../../src/kafka/route.js';
import type { PreferencePair } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import type { SchemaName } from '../../../src/serde/schemas.js';
import { makeConversation, makeInstruction } from '../../support/records.js';

const serde = createSerde();
const logger = pino({ level: 'silent' });

async function raw(schema: SchemaName, value: unknown, offset: number): Promise<RawRecord> {
  const encoded = await serde.encode(schema, value);
  return { topic: 't', partition: 0, offset: String(offset), key: null, value: encoded.value, headers: encoded.headers, timestamp: '0' };
}

describe('training rows', () => {
  it('formats what it can and counts every skipped record by reason', async () => {
    const rows = new TrainingRows(serde, 'alpaca', logger);
    expect(await rows.rowOf(await raw('magpie.Conversation', makeConversation(1), 0))).toEqual({ instruction: 'Test instruction number 1?', input: '', output: 'Answer 1.' });
    expect(await rows.rowOf(await raw('magpie.Instruction', makeInstruction(2), 1))).toBeUndefined();
    expect(await rows.rowOf({ topic: 't', partition: 0, offset: '2', key: null, value: Buffer.from('junk'), headers: {}, timestamp: '0' })).toBeUndefined();
    expect(rows.summary).toEqual({ written: 1, skipped: { not_a_conversation: 1, undecodable: 1 }, files: [] });
    expect(describeSummary(rows.summary)).toContain('skipped 1: not a magpie.Conversation');
  });

  it('DPO exports preference pairs and skips records without chosen/rejected', async () => {
    const c = makeConversation(1, 'Name a prime.');
    const pair: PreferencePair = {
      uuid: c.uuid, model: c.model, gen_input_configs: c.gen_input_configs, instruction: c.instruction, chosen: '7 is prime.', rejected: '8.',
      chosen_reward: 2, rejected_reward: -1, candidates: [{ response: '7 is prime.', reward: 2, finish_reason: 'stop', tokens: 4 }, { response: '8.', reward: -1, finish_reason: 'stop', tokens: 2 }],
      reward_model: 'rm', gen_response_configs: c.gen_response_configs, task_category: null, other_task_category: [], intent: null, knowledge: null, difficulty: null,
      input_quality: null, quality_explanation: null, llama_guard_2: null, language: null, min_neighbor_distance: null, min_similar_uuid: null, repeat_count: null, created_at: c.created_at,
    };
    const rows = new TrainingRows(serde, 'dpo', logger);
    expect(await rows.rowOf(await raw('magpie.PreferencePair', pair, 0))).toEqual({ prompt: 'Name a prime.', chosen: '7 is prime.', rejected: '8.' });
    expect(await rows.rowOf(await raw('magpie.Conversation', c, 1))).toBeUndefined();
    expect(rows.summary).toMatchObject({ written: 1, skipped: { no_preference_pair: 1 } });
  });
});
