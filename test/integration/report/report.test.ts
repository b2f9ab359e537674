import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureTopics } from '../../../src/kafka/admin.js';
import { createKafka } from '../../../src/kafka/client.js';
import { ReportAggregator, type ReportData } from '../../../src/report/aggregate.js';
import type { Conversation, DeadLetter, Rejected } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { kafkaConfigSchema } from '../../../src/topology/schema.js';
import { PROJECT_ROOT, uniquePrefix } from '../../support/broker.js';
import { makeConversation, produceRecords } from '../../support/records.js';
import { decodePng } from './png.js';

const run = promisify(execFile);
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const bootstrap = inject('kafkaBootstrap');
/** Screenshots and pages stay here for a person to look at. */
const ARTIFACTS = path.join(process.env.MAGPIE_RUN_DIR ?? path.join(PROJECT_ROOT, '.magpie'), 'report-test');
const T0 = Date.UTC(2025, 5, 15, 14, 0);

const CATEGORIES = ['Math', 'Math', 'Math', 'Coding & Debugging', 'Coding & Debugging', 'Information seeking', 'Information seeking', 'Information seeking', 'Information seeking', 'Creative writing', null, 'Planning'];
const LANGUAGES = ['en', 'en', 'en', 'en', 'de', 'en', 'en', 'zh', 'en', 'de', null, 'en'];
const DIFFICULTIES = ['very easy', 'easy', 'medium', 'hard', 'very hard'];
const QUALITIES = ['poor', 'average', 'good', 'excellent'];

function conversations(): Conversation[] {
  return CATEGORIES.map((category, i) => ({
    ...makeConversation(i, `Instruction ${i}: ${'why '.repeat(i * 5)}?`, `Answer ${i}: ${'because '.repeat(i * 12)}.`),
    task_category: category,
    difficulty: DIFFICULTIES[i % 5]!,
    input_quality: QUALITIES[i % 4]!,
    language: LANGUAGES[i]!,
    llama_guard_2: i === 7 ? 'unsafe\nS2' : 'safe',
    instruct_reward: i * 0.5 - 2,
    min_neighbor_distance: i < 2 ? 0.01 : 0.1 * (i % 9),
    is_duplicate: i < 2,
    response_finish_reason: i === 11 ? 'length' : 'stop',
    tag_failures: i === 10 ? [{ tag: 'task_category', reason: 'unparseable output' }] : [],
    created_at: T0 + i * 20_000,
  }));
}

function rejects(): Rejected[] {
  const rules = ['template_leak', 'template_leak', 'template_leak', 'input_quality', 'input_quality'];
  return rules.map((rule, i) => ({
    stage: rule === 'template_leak' ? 'clean' : 'filter', rule, reason: `failed ${rule}`, uuid: `r-${i}`, record_json: '{}',
    source_topic: 'in', source_partition: 0, source_offset: i, rejected_at: T0 + i * 45_000,
  }));
}

function deadLetters(): DeadLetter[] {
  return [0, 1].map((i) => ({
    stage: 'respond', code: 'INFERENCE_TIMEOUT', reason: 'did not answer within 60000 ms', source_topic: 'in', source_partition: 0, source_offset: i,
    source_key: null, source_headers: {}, original: null, attempts: 3, failed_at: T0,
  }));
}

/** Chromium's headless flags for a hermetic run: no network services, a throwaway profile. */
async function chromium(args: string[]): Promise<string> {
  const profile = await mkdtemp(path.join(tmpdir(), 'magpie-chromium-'));
  try {
    const { stdout } = await run(
      '/usr/bin/chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, ...args],
      { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
    );
    return stdout;
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

function embedded(html: string): ReportData {
  const m = /<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html);
  if (!m) throw new Error('no report-data script in the page');
  return JSON.parse(m[1]!) as ReportData;
}

describe('magpie report', () => {
  beforeAll(async () => {
    await run('bash', [path.join(PROJECT_ROOT, 'scripts', 'ensure-chromium.sh')], { timeout: 600_000 });
    await mkdir(ARTIFACTS, { recursive: true });
  });

  it('writes a page whose numbers match the topics, and which renders in headless Chromium', async () => {
    const prefix = uniquePrefix('report');
    const topics = { sink: `${prefix}sink`, rejects: `${prefix}rejects`, dead: `${prefix}dlq` };
    const kafka = createKafka(kafkaConfigSchema.parse({ brokers: [bootstrap] }), logger);
    await ensureTopics(kafka, [
      { name: topics.sink, partitions: 2, replicationFactor: 1 },
      { name: topics.rejects, partitions: 1, replicationFactor: 1 },
      { name: topics.dead, partitions: 1, replicationFactor: 1 },
    ]);
    const serde = createSerde();
    const records = conversations();
    await produceRecords(kafka, serde, topics.sink, 'magpie.Conversation', records, { raw: [{ key: 'garbage', value: Buffer.from('\u0000not avro') }] });
    await produceRecords(kafka, serde, topics.rejects, 'magpie.Rejected', rejects().map((r) => ({ ...r, uuid: r.uuid! })));
    await produceRecords(kafka, serde, topics.dead, 'magpie.DeadLetter', deadLetters().map((d, i) => ({ ...d, uuid: `d-${i}` })));

    const out = path.join(ARTIFACTS, 'report.html');
    const { stderr } = await run(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'src', 'cli', 'main.ts'), '--brokers', bootstrap, '--log-level', 'warn', 'report', '--topic', topics.sink, '--rejects', topics.rejects, '--dead-letter', topics.dead, '--out', out], { cwd: PROJECT_ROOT, timeout: 120_000 });
    expect(stderr).toContain(`report: 12 records, 5 rejects, 2 dead letters, 1 undecodable → ${out}`);
    const html = await readFile(out, 'utf8');
    const data = embedded(html);

    // The numbers, spelled out for the data set above.
    expect(data.totals).toEqual({
      records: 12, bySchema: { 'magpie.Conversation': 12 }, taggable: 12, rejects: 5, deadLetters: 2, undecodable: 1,
      truncatedResponses: 1, duplicates: 2, unsafe: 1, withTagFailures: 1,
    });
    expect(data.taskCategories).toEqual([
      { label: 'Information seeking', count: 4 }, { label: 'Planning', count: 1 }, { label: 'Coding & Debugging', count: 2 },
      { label: 'Math', count: 3 }, { label: 'Creative writing', count: 1 }, { label: '(untagged)', count: 1 },
    ]);
    expect(data.languages).toEqual([{ label: 'en', count: 8 }, { label: 'de', count: 2 }, { label: 'zh', count: 1 }, { label: '(untagged)', count: 1 }]);
    expect(data.rejectRules.map((g) => [g.key, g.count, g.stages])).toEqual([['template_leak', 3, ['clean']], ['input_quality', 2, ['filter']]]);
    expect(data.deadLetterCodes.map((g) => [g.key, g.count])).toEqual([['INFERENCE_TIMEOUT', 2]]);
    expect(data.undecodableReasons[0]!.key).toMatch(/^SERDE_/);
    expect(data.reward.summary).toMatchObject({ count: 12, min: -2, max: 3.5, median: 0.75 });
    expect(data.minNeighborDistance.bins.reduce((s, b) => s + b.count, 0)).toBe(12);
    expect(data.throughput).toMatchObject({ bucketMinutes: 1, records: [3, 3, 3, 3], rejects: [2, 1, 1, 1] });
    // And everything else as the aggregation computes it from the same records.
    const expected = new ReportAggregator({ topic: topics.sink, rejects: topics.rejects, deadLetter: topics.dead });
    for (const r of records) expected.add('magpie.Conversation', r);
    for (const r of rejects()) expected.addReject(r);
    for (const d of deadLetters()) expected.addDeadLetter(d);
    expected.addUndecodable(topics.sink, data.undecodableReasons[0]!.key, data.undecodableReasons[0]!.example);
    expect(data).toEqual({ ...expected.result(`Magpie data report: ${topics.sink}`, 0), generatedAt: data.generatedAt });

    // The page as a browser lays it out: every chart present in the DOM, and a screenshot that is not blank.
    const url = `file://${out}`;
    const dom = await chromium(['--dump-dom', url]);
    for (const id of ['task-category', 'difficulty', 'input-quality', 'language', 'instruction-length', 'response-length', 'min-neighbor-distance', 'reward', 'throughput', 'reject-rules']) {
      expect(dom).toContain(`data-chart="${id}"`);
    }
    expect(dom.match(/<svg /g)!.length).toBeGreaterThanOrEqual(14);
    expect(dom.match(/<rect /g)!.length).toBeGreaterThan(40);
    const png = path.join(ARTIFACTS, 'report.png');
    await rm(png, { force: true });
    await chromium([`--screenshot=${png}`, '--window-size=1280,2000', url]);
    expect((await stat(png)).size).toBeGreaterThan(30_000);
    const image = decodePng(await readFile(png));
    expect([image.width, image.height]).toEqual([1280, 2000]);
    // Text, bars in the accent colour and the page background: a blank page has one colour.
    expect(image.colours.size).toBeGreaterThan(50);
    expect(image.colours.has(0x3b6fd8) || image.colours.has(0x3b6fd8ff)).toBe(true);
  });
});
