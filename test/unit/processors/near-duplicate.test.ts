import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import avro from 'avsc';
import { afterAll, describe, expect, it } from 'vitest';
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
  return nearDuplicate.create(nearDuplicate.config.parse({ snapshots: { every: 0 }, ...config }), deps());
}

/** A changelog topic in memory: the restorer reads it from an offset, as the runner reads the real topic. */
class MemoryChangelog implements StateRestorer {
  readonly entries: Emit<Out>[] = [];
  reads: bigint[] = [];

  constructor(entries: Emit<Out>[] = []) {
    this.append(entries);
  }

  append(entries: Emit<Out>[]): this {
    this.entries.push(...entries);
    return this;
  }

  topicOf(): string {
    return 'test-changelog';
  }

  async restore(port: string, onRecord: (key: string | null, value: unknown, offset: bigint) => void | Promise<void>, from = 0n) {
    expect(port).toBe('changelog');
    this.reads.push(from);
    const end = BigInt(this.entries.length);
    for (let offset = from; offset < end; offset++) {
      const e = this.entries[Number(offset)]!;
      // Through Avro, as the runner decodes them.
      await onRecord(e.key ?? null, indexEntryType.fromBuffer(indexEntryType.toBuffer(e.value)), offset);
    }
    return { records: Number(end > from ? end - from : 0n), next: end > from ? end : from };
  }
}

const emptyRestorer = () => new MemoryChangelog();

function changelogOf(outcomes: Outcome<Out>[]): Emit<Out>[] {
  return outcomes.flatMap((o) => (o.kind === 'emit' ? o.records.filter((r) => r.port === 'changelog') : []));
}

/** A restorer replaying changelog records through Avro, as the runner reads them back from the topic. */
function replaying(entries: Emit<Out>[]): StateRestorer {
  return new MemoryChangelog(entries);
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

describe('near-duplicate', { timeout: 60_000 }, () => {
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
    await straight.init!(stageContext(), emptyRestorer());
    const expected: Conversation[] = [];
    for (const batch of batches(0, 400, 32)) expected.push(...mainValues<Conversation>(await straight.process(batch, stageContext())));

    const before = dedupe();
    await before.init!(stageContext(), emptyRestorer());
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
    await expect(dedupe().init!(stageContext(), replaying(entries.slice(1)))).rejects.toThrow(/seq 1, expected 0.*delete it and reprocess/);
  });
});

/** Runs a stage the way the runner does: each batch's outputs reach the changelog only when `commit` says so. */
async function run(stage: ReturnType<typeof dedupe>, changelog: MemoryChangelog, batches: InputRecord<Conversation>[][], commit = true, ctx = stageContext()): Promise<Conversation[]> {
  const got: Conversation[] = [];
  for (const batch of batches) {
    const out = await stage.process(batch, ctx);
    if (commit) changelog.append(changelogOf(out));
    got.push(...mainValues<Conversation>(out));
  }
  return got;
}

/** A stage context whose log lines (info and up) are kept. */
function loggingContext() {
  const lines: { level: number; msg: string }[] = [];
  const ctx = { ...stageContext(), logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) }) };
  return { ctx, lines };
}

describe('near-duplicate state across owners and restarts', { timeout: 60_000 }, () => {
  const setup = async () => {
    const records = await embedded(corpus(400));
    const batches = (from: number, to: number, size = 25) => {
      const out: InputRecord<Conversation>[][] = [];
      for (let i = from; i < to; i += size) out.push(inputs(records.slice(i, Math.min(i + size, to)), i));
      return out;
    };
    const straight = dedupe();
    await straight.init!(stageContext(), emptyRestorer());
    const expected = decisions(await run(straight, new MemoryChangelog(), batches(0, 400)));
    return { records, batches, expected };
  };

  it('a standby loaded at start catches up on assignment with what the active instance committed since', async () => {
    const { batches, expected } = await setup();
    const changelog = new MemoryChangelog();
    const active = dedupe();
    await active.init!(stageContext(), changelog);
    await active.onAssigned!(0, changelog, stageContext());
    const standby = dedupe();
    await standby.init!(stageContext(), changelog);
    const got = await run(active, changelog, batches(0, 230));
    // The active instance is gone (killed); the standby is assigned the partition.
    await standby.onAssigned!(0, changelog, stageContext());
    got.push(...(await run(standby, changelog, batches(230, 400))));
    expect(decisions(got)).toEqual(expected);
    // The changelog it left restores in full: seqs without gaps or repeats.
    await expect(dedupe().init!(stageContext(), new MemoryChangelog(changelog.entries))).resolves.toBeUndefined();
    expect(changelog.entries.map((e) => (e.value as IndexEntry).seq)).toEqual(changelog.entries.map((_, i) => i));
  });

  it('keeps a chunk it could not commit for its re-delivery, and takes back a partition another instance moved on', async () => {
    const { batches, expected } = await setup();
    const changelog = new MemoryChangelog();
    const first = dedupe();
    await first.init!(stageContext(), changelog);
    await first.onAssigned!(0, changelog, stageContext());
    const got = await run(first, changelog, batches(0, 100));
    // A commit fails: the runner fences in again and re-delivers the chunk, which gets its first decisions.
    const failed = await run(first, changelog, batches(100, 125), false);
    await first.onAssigned!(0, changelog, stageContext());
    expect(await run(first, changelog, batches(100, 125))).toEqual(failed);
    got.push(...failed);
    // Then it hangs with one more chunk uncommitted; a second instance takes over and goes on.
    await run(first, changelog, batches(125, 150), false);
    const second = dedupe();
    await second.init!(stageContext(), changelog);
    await second.onAssigned!(0, changelog, stageContext());
    got.push(...(await run(second, changelog, batches(125, 300))));
    // The first one comes back as the owner: its uncommitted chunk matches what the second committed.
    await first.onAssigned!(0, changelog, stageContext());
    got.push(...(await run(first, changelog, batches(300, 400))));
    expect(decisions(got)).toEqual(expected);
    expect(changelog.entries.map((e) => (e.value as IndexEntry).seq)).toEqual(changelog.entries.map((_, i) => i));
  });

  it('decides chunks handed over before the previous one is done in the order they were handed over', async () => {
    const { batches, expected } = await setup();
    const stage = dedupe();
    await stage.init!(stageContext(), emptyRestorer());
    const outcomes = await Promise.all(batches(0, 400).map((b) => stage.process(b, stageContext())));
    expect(decisions(outcomes.flatMap((o) => mainValues<Conversation>(o)))).toEqual(expected);
  });

  it('rebuilds an index holding uncommitted entries the changelog contradicts', async () => {
    const { batches, expected } = await setup();
    const changelog = new MemoryChangelog();
    const first = dedupe();
    await first.init!(stageContext(), changelog);
    await first.onAssigned!(0, changelog, stageContext());
    const got = await run(first, changelog, batches(0, 100));
    // An uncommitted chunk of other records (seqs 100.. with other uuids than the ones committed next).
    await run(first, changelog, batches(300, 325), false);
    const second = dedupe();
    await second.init!(stageContext(), changelog);
    await second.onAssigned!(0, changelog, stageContext());
    got.push(...(await run(second, changelog, batches(100, 200))));
    const { ctx, lines } = loggingContext();
    await first.onAssigned!(0, changelog, ctx);
    expect(lines.some((l) => l.level === 40 && /rebuilding/.test(l.msg))).toBe(true);
    got.push(...(await run(first, changelog, batches(200, 400))));
    expect(decisions(got)).toEqual(expected);
  });
});

describe('near-duplicate snapshots', { timeout: 60_000 }, () => {
  const made: string[] = [];
  const dirs = () => {
    made.push(mkdtempSync(path.join(tmpdir(), 'magpie-snapshots-')));
    return made[made.length - 1]!;
  };
  afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

  async function history(dir: string) {
    const records = await embedded(corpus(400));
    const batches = (from: number, to: number) => {
      const out: InputRecord<Conversation>[][] = [];
      for (let i = from; i < to; i += 25) out.push(inputs(records.slice(i, Math.min(i + 25, to)), i));
      return out;
    };
    const changelog = new MemoryChangelog();
    const writer = dedupe({ snapshots: { dir, every: 100 } });
    await writer.init!(stageContext(), changelog);
    await writer.onAssigned!(0, changelog, stageContext());
    const first = await run(writer, changelog, batches(0, 260));
    const straight = [...first, ...(await run(writer, new MemoryChangelog(), batches(260, 400)))];
    return { batches, changelog: new MemoryChangelog(changelog.entries), expected: decisions(straight) };
  }

  it('restores from the newest snapshot and the changelog after it, with the decisions of a full replay', async () => {
    const dir = dirs();
    const { batches, changelog, expected } = await history(dir);
    const files = readdirSync(path.join(dir, 'test-changelog'));
    expect(files.filter((f) => f.endsWith('.json'))).toHaveLength(2);

    const fromSnapshot = dedupe({ snapshots: { dir, every: 100 } });
    const { ctx, lines } = loggingContext();
    await fromSnapshot.init!(ctx, changelog);
    expect(changelog.reads[0]).toBeGreaterThan(150n); // the tail only
    expect(lines.some((l) => l.msg.includes('restored from a snapshot'))).toBe(true);
    const full = dedupe();
    await full.init!(stageContext(), new MemoryChangelog(changelog.entries));
    const tail = batches(260, 400);
    const a = await run(fromSnapshot, new MemoryChangelog(), tail);
    const b = await run(full, new MemoryChangelog(), tail);
    expect(decisions(a)).toEqual(decisions(b));
    expect(decisions(a)).toEqual(expected.slice(260));
  });

  it('replays the changelog on all cores when asked, and goes on from where it ends', async () => {
    const records = await embedded(corpus(300));
    const changelog = new MemoryChangelog();
    await run(dedupe(), changelog, [inputs(records.slice(0, 250))]);
    const stage = dedupe({ parallelRestore: true });
    await stage.init!(stageContext(), changelog);
    const out = await stage.process(inputs(records.slice(250), 250), stageContext());
    const added = changelogOf(out).map((e) => (e.value as IndexEntry).seq);
    expect(added[0]).toBe(changelog.entries.length);
    expect(added).toEqual(added.map((_, i) => changelog.entries.length + i));
    // An exact repeat of an instruction restored from the changelog is found at distance 0.
    const repeat = await stage.process(inputs([{ ...records[3]!, uuid: 'repeat-of-3' }], 400), stageContext());
    expect(mainValues<Conversation>(repeat)[0]).toMatchObject({ min_neighbor_distance: 0, is_duplicate: true });
  });

  it('skips a corrupt snapshot with a warning and replays the whole changelog', async () => {
    const dir = dirs();
    const { batches, changelog, expected } = await history(dir);
    const sub = path.join(dir, 'test-changelog');
    for (const f of readdirSync(sub).filter((n) => n.endsWith('.usearch'))) {
      const bytes = readFileSync(path.join(sub, f));
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      writeFileSync(path.join(sub, f), bytes);
    }
    const stage = dedupe({ snapshots: { dir, every: 100 } });
    const { ctx, lines } = loggingContext();
    await stage.init!(ctx, changelog);
    expect(lines.filter((l) => l.level === 40 && l.msg === 'index snapshot skipped')).toHaveLength(2);
    expect(changelog.reads[0]).toBe(0n);
    expect(decisions(await run(stage, new MemoryChangelog(), batches(260, 400)))).toEqual(expected.slice(260));
  });

  it('skips a snapshot the changelog does not match (the topic was recreated) and replays it', async () => {
    const dir = dirs();
    const { batches, changelog, expected } = await history(dir);
    // Same topic name, other contents: the first 150 entries only (as if recreated and refilled part-way).
    const recreated = new MemoryChangelog(changelog.entries.slice(0, 150));
    const stage = dedupe({ snapshots: { dir, every: 1000 } });
    const { ctx, lines } = loggingContext();
    await stage.init!(ctx, recreated);
    expect(lines.some((l) => l.level === 40 && /does not match the changelog/.test(l.msg))).toBe(true);
    await stage.onAssigned!(0, recreated, stageContext());
    const got = await run(stage, recreated, batches(150, 400));
    expect(decisions(got)).toEqual(expected.slice(150));
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
