import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { describeSummary, TrainingRows } from '../../../src/export/training-rows.js';
import type { RawRecord } from '../../../src/kafka/route.js';
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

  it('DPO skips records without chosen/rejected, and exports preference pairs', async () => {
    const rows = new TrainingRows(serde, 'dpo', logger);
    expect(await rows.rowOf(await raw('magpie.Conversation', makeConversation(1), 0))).toBeUndefined();
    expect(rows.summary.skipped).toEqual({ no_preference_pair: 1 });
  });
});
