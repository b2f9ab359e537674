import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ParquetReader } from '@dsnp/parquetjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toShareGpt } from '../../../src/export/formats.js';
import { DurableFile, fileKindOf } from '../../../src/export/row-writer.js';
import { makeConversation } from '../../support/records.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'magpie-export-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const bigintsAsNumbers = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)));

describe('durable export files', () => {
  it('JSONL: rows go to .tmp; commit makes the final file appear whole', async () => {
    const file = await DurableFile.open(path.join(dir, 'out.jsonl'), 'jsonl', 'alpaca');
    await file.write({ instruction: 'a', input: '', output: 'b' });
    await file.write({ instruction: 'c', input: '', output: 'd' });
    expect(await readdir(dir)).toEqual(['out.jsonl.tmp']);
    expect(file.bytes).toBe(Buffer.byteLength('{"instruction":"a","input":"","output":"b"}\n') * 2);
    await file.commit();
    expect(await readdir(dir)).toEqual(['out.jsonl']);
    const lines = (await readFile(path.join(dir, 'out.jsonl'), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual([{ instruction: 'a', input: '', output: 'b' }, { instruction: 'c', input: '', output: 'd' }]);
  });

  it('abandon leaves only the unfinished .tmp, as a crash would', async () => {
    const file = await DurableFile.open(path.join(dir, 'shard-000001.jsonl'), 'jsonl', 'alpaca');
    await file.write({ instruction: 'a', input: '', output: 'b' });
    await file.abandon();
    expect(await readdir(dir)).toEqual(['shard-000001.jsonl.tmp']);
  });

  it('Parquet: ShareGPT rows read back with nulls, nested turns and lists intact', async () => {
    const rows = [toShareGpt({ ...makeConversation(1), task_category: 'Math', other_task_category: ['Reasoning', 'Others'], instruct_reward: 0.75, repeat_count: 2 }), toShareGpt(makeConversation(2))];
    const file = await DurableFile.open(path.join(dir, 'out.parquet'), 'parquet', 'sharegpt');
    for (const row of rows) await file.write({ ...row });
    await file.commit();
    const reader = await ParquetReader.openFile(path.join(dir, 'out.parquet'));
    const cursor = reader.getCursor();
    const back: unknown[] = [];
    for (let r = await cursor.next(); r; r = await cursor.next()) back.push(bigintsAsNumbers(r));
    await reader.close();
    // Parquet has no empty list: a repeated field with no items reads back as null.
    expect(back).toEqual(rows.map((r) => ({ ...r, other_task_category: r.other_task_category.length ? r.other_task_category : null })));
  });

  it('picks Parquet from the flag or the extension', () => {
    expect(fileKindOf('a.parquet', undefined)).toBe('parquet');
    expect(fileKindOf('a.jsonl', true)).toBe('parquet');
    expect(fileKindOf('a.jsonl', undefined)).toBe('jsonl');
  });
});
