import { readFileSync } from 'node:fs';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { embed } from '../../../src/processors/embed.js';
import { nearDuplicate } from '../../../src/processors/near-duplicate.js';
import type { Emit, InputRecord, Outcome, StateRestorer } from '../../../src/processors/stage.js';
import type { Conversation, IndexEntry } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';
import { deps, HashingEmbedder, inputs, mainValues, seededRandom, stageContext } from './harness.js';

const indexEntryType = avro.Type.forSchema(JSON.parse(readFileSync(new URL('../../../schemas/index_entry.avsc', import.meta.url), 'utf8')) as avro.Schema);

type Out = Conversation | IndexEntry;

/** Records with embeddings from the deterministic bag-of-words embedder, as the embed stage would write them. */
async function embedded(instructions: string[], firstId = 0): Promise<Conversation[]> {
  const stage = embed.create(embed.config.parse({}), deps({ embedder: new HashingEmbedder() }));
  const records = instructions.map((text, i) => makeConversation(firstId + i, text));
  return mainValues<Conversation>(await stage.process(inputs(records), stageContext()));
}

function dedupe(config: Record<string, unknown> = {}) {
  return nearDuplicate.create(nearDuplicate.config.parse(config), deps());
}

const emptyRestorer: StateRestorer = { restore: async () => 0 };

function changelogOf(outcomes: Outcome<Out>[]): Emit<Out>[] {
  return outcomes.flatMap((o) => (o.kind === 'emit' ? o.records.filter((r) => r.port === 'changelog') : []));
}

/** A restorer replaying changelog records through Avro, as the runner reads them back from the topic. */
function replaying(entries: Emit<Out>[]): StateRestorer {
  return {
    restore: async (port, onRecord) => {
      expect(port).toBe('changelog');
      for (const e of entries) onRecord(e.key ?? null, indexEntryType.fromBuffer(indexEntryType.toBuffer(e.value)));
      return entries.length;
    },
  };
}

const decisions = (values: Conversation[]) => values.map((v) => [v.uuid, v.min_neighbor_distance, v.min_similar_uuid, v.repeat_count, v.is_duplicate]);

/** 400 instructions drawn from a small vocabulary, so exact and near repeats happen often. */
function corpus(n: number): string[] {
  const random = seededRandom(3);
  const topics = ['python lists', 'french verbs', 'black holes', 'sourdough bread', 'tax returns', 'chess openings', 'sql joins', 'marathon training'];
  const asks = ['Explain', 'Give me tips on', 'Write a short poem about', 'What is the history of', 'Summarize'];
  const tails = ['', ' for a beginner', ' in detail', ' please', ' briefly'];
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
  return Array.from({ length: n }, () => `${pick(asks)} ${pick(topics)}${pick(tails)}.`);
}

describe('near-duplicate', () => {
  it('gives the first record no neighbour, then compares each record with every earlier one, in the same batch too', async () => {
    const records = await embedded(['Explain python lists.', 'Write a poem about the sea.', 'Explain python lists.', 'explain Python lists please', 'Summarize tax returns.']);
    const stage = dedupe({ duplicateThreshold: 0.2 });
    const out = await stage.process(inputs(records), stageContext());
    const values = mainValues<Conversation>(out);
    expect(values[0]).toMatchObject({ min_neighbor_distance: null, min_similar_uuid: null, repeat_count: 0, is_duplicate: false });
    expect(values[1]!.is_duplicate).toBe(false);
    expect(values[2]).toMatchObject({ min_neighbor_distance: 0, min_similar_uuid: records[0]!.uuid, repeat_count: 1, is_duplicate: true });
    expect([records[0]!.uuid, records[2]!.uuid]).toContain(values[3]!.min_similar_uuid); // 0 and 2 tie
    expect(values[3]!.min_neighbor_distance).toBeGreaterThan(0);
    expect(values[3]).toMatchObject({ repeat_count: 2, is_duplicate: true });
    expect(values[4]!.is_duplicate).toBe(false);
    // The embedding is dropped, embedding_model kept; every record went into the index via the changelog.
    expect(values.every((v) => v.embedding === null && v.embedding_model === 'test/hashing-bow')).toBe(true);
    expect(changelogOf(out).map((e) => [e.key, (e.value as IndexEntry).seq])).toEqual(records.map((r, i) => [r.uuid, i]));
  });

  it('counts all earlier repeats beyond k', async () => {
    const records = await embedded(Array.from({ length: 12 }, () => 'What is the history of chess openings?'));
    const values = mainValues<Conversation>(await dedupe({ k: 2 }).process(inputs(records), stageContext()));
    expect(values.map((v) => v.repeat_count)).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it('keeps the embedding when asked', async () => {
    const records = await embedded(['Explain black holes.']);
    const [value] = mainValues<Conversation>(await dedupe({ keepEmbedding: true }).process(inputs(records), stageContext()));
    expect(value!.embedding).toEqual(records[0]!.embedding);
  });

  it('makes the same decisions after a restart restored from the changelog as an uninterrupted run', async () => {
    const records = await embedded(corpus(400));
    const batches = (from: number, to: number, size: number) => {
      const out: InputRecord<Conversation>[][] = [];
      for (let i = from; i < to; i += size) out.push(inputs(records.slice(i, Math.min(i + size, to)), i));
      return out;
    };

    const straight = dedupe();
    await straight.init!(stageContext(), emptyRestorer);
    const expected: Conversation[] = [];
    for (const batch of batches(0, 400, 32)) expected.push(...mainValues<Conversation>(await straight.process(batch, stageContext())));

    const before = dedupe();
    await before.init!(stageContext(), emptyRestorer);
    const changelog: Emit<Out>[] = [];
    const got: Conversation[] = [];
    for (const batch of batches(0, 230, 17)) {
      const out = await before.process(batch, stageContext());
      changelog.push(...changelogOf(out));
      got.push(...mainValues<Conversation>(out));
    }
    const after = dedupe();
    await after.init!(stageContext(), replaying(changelog));
    for (const batch of batches(230, 400, 50)) got.push(...mainValues<Conversation>(await after.process(batch, stageContext())));

    expect(decisions(got)).toEqual(decisions(expected));
    const duplicates = expected.filter((v) => v.is_duplicate).length;
    expect(duplicates).toBeGreaterThan(100);
    expect(duplicates).toBeLessThan(400);
  });

  it('answers a re-delivered batch (same offsets) with its first decisions, and treats a replayed uuid at a new offset as a repeat', async () => {
    const records = await embedded(['Explain sql joins.', 'Summarize french verbs.', 'Explain sql joins in detail.']);
    const stage = dedupe();
    const first = await stage.process(inputs(records), stageContext());
    const again = await stage.process(inputs(records), stageContext());
    expect(again).toEqual(first);
    const oneByOne = [];
    for (const r of inputs(records)) oneByOne.push(...(await stage.process([r], stageContext())));
    expect(oneByOne).toEqual(first);

    const replayed = await stage.process(inputs([records[1]!], 99), stageContext());
    expect(changelogOf(replayed)).toEqual([]);
    expect(mainValues<Conversation>(replayed)[0]).toMatchObject({ min_neighbor_distance: 0, min_similar_uuid: records[1]!.uuid, repeat_count: 1, is_duplicate: true });
    const next = await stage.process(inputs(await embedded(['Write a short poem about black holes.'], 50), 100), stageContext());
    expect((changelogOf(next)[0]!.value as IndexEntry).seq).toBe(3);
  });

  it('dead-letters records without an embedding or with the wrong dimensions', async () => {
    const [a] = await embedded(['Explain sql joins.']);
    const stage = dedupe();
    const out = await stage.process(inputs([a!, { ...makeConversation(2), embedding: null }, { ...makeConversation(3), embedding: [1, 0, 0] }]), stageContext());
    expect(out[0]!.kind).toBe('emit');
    expect(out[1]).toMatchObject({ kind: 'dead', code: 'NO_EMBEDDING' });
    expect(out[2]).toMatchObject({ kind: 'dead', code: 'EMBEDDING_DIMENSIONS' });
  });

  it('refuses a changelog whose sequence has a gap', async () => {
    const records = await embedded(['Explain sql joins.', 'Summarize french verbs.']);
    const entries = changelogOf(await dedupe().process(inputs(records), stageContext()));
    await expect(dedupe().init!(stageContext(), replaying(entries.slice(1)))).rejects.toThrow(/seq 1, expected 0/);
  });
});

describe('embed', () => {
  it('embeds instructions of a batch in one call and records the model', async () => {
    const embedder = new HashingEmbedder(16);
    const stage = embed.create(embed.config.parse({ embedder: 'minilm' }), deps({ embedder }));
    const records = [makeConversation(1, 'Explain sql joins.'), makeConversation(2, 'Summarize french verbs.')];
    const values = mainValues<Conversation>(await stage.process(inputs(records), stageContext()));
    expect(embedder.calls).toEqual([['Explain sql joins.', 'Summarize french verbs.']]);
    expect(values.map((v) => v.embedding!.length)).toEqual([16, 16]);
    expect(values[0]!.embedding_model).toBe('test/hashing-bow');
    expect(Math.hypot(...values[0]!.embedding!)).toBeCloseTo(1, 5);
    expect(Array.isArray(values[0]!.embedding)).toBe(true);
  });
});
