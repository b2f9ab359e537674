import { describe, expect, it } from 'vitest';
import { histogram, niceStep, ReportAggregator, summarize, throughput, TOP_LANGUAGES, UNTAGGED } from '../../../src/report/aggregate.js';
import type { Conversation, DeadLetter, PreferencePair, Rejected } from '../../../src/serde/records.generated.js';
import { makeConversation, makeInstruction } from '../../support/records.js';

const T0 = Date.UTC(2025, 5, 15, 14, 0);
const MIN = 60_000;

function tagged(i: number, tags: Partial<Conversation>, instruction = 'x'.repeat(10 * (i + 1)), response = 'y'.repeat(100 * (i + 1))): Conversation {
  return { ...makeConversation(i, instruction, response), created_at: T0 + i * 30_000, ...tags };
}

function rejected(rule: string, stage: string, at: number, reason = `failed ${rule}`): Rejected {
  return { stage, rule, reason, uuid: null, record_json: '{}', source_topic: 'in', source_partition: 0, source_offset: 1, rejected_at: at };
}

function deadLetter(code: string, stage: string): DeadLetter {
  return { stage, code, reason: `${code} happened`, source_topic: 'in', source_partition: 0, source_offset: 3, source_key: null, source_headers: {}, original: null, attempts: 1, failed_at: T0 };
}

describe('histogram binning', () => {
  it('picks 1, 2, 2.5 or 5 times a power of ten', () => {
    expect(niceStep(573)).toBe(50);
    expect(niceStep(2)).toBe(0.1);
    expect(niceStep(0.9)).toBe(0.05);
    expect(niceStep(100)).toBe(5);
    expect(niceStep(45, 20)).toBe(2.5);
  });

  it('covers every value with round edges; the last bin holds its upper edge', () => {
    expect(histogram([3, 7, 12, 12, 20], 4).bins).toEqual([
      { from: 0, to: 5, count: 1 },
      { from: 5, to: 10, count: 1 },
      { from: 10, to: 15, count: 2 },
      { from: 15, to: 20, count: 1 },
    ]);
  });

  it('puts values on a fractional edge into the bin they start, despite floating point', () => {
    expect(histogram([0.05, 0.15, 0.15, 0.3], 6).bins).toEqual([
      { from: 0.05, to: 0.1, count: 1 },
      { from: 0.1, to: 0.15, count: 0 },
      { from: 0.15, to: 0.2, count: 2 },
      { from: 0.2, to: 0.25, count: 0 },
      { from: 0.25, to: 0.3, count: 1 },
    ]);
  });

  it('gives one bin to a single value, negative ones included, and none to no values', () => {
    expect(histogram([7, 7]).bins).toEqual([{ from: 0, to: 10, count: 2 }]);
    expect(histogram([-3]).bins).toEqual([{ from: -5, to: 0, count: 1 }]);
    expect(histogram([])).toEqual({ bins: [], summary: null });
  });

  it('summarizes with the median and nearest-rank percentiles', () => {
    expect(summarize([4, 1, 3, 2])).toEqual({ count: 4, min: 1, max: 4, mean: 2.5, median: 2.5, p10: 1, p90: 4 });
    expect(summarize(Array.from({ length: 101 }, (_, i) => i))).toMatchObject({ median: 50, p10: 10, p90: 90, mean: 50 });
  });
});

describe('throughput', () => {
  it('counts records and rejects per minute over a zero-filled series', () => {
    const t = throughput([T0, T0 + 30_000, T0 + 61_000, T0 + 5 * MIN], [T0 + 2 * MIN + 1]);
    expect(t).toEqual({
      bucketMinutes: 1,
      starts: [0, 1, 2, 3, 4, 5].map((m) => T0 + m * MIN),
      records: [2, 1, 0, 0, 0, 1],
      rejects: [0, 0, 1, 0, 0, 0],
      meanPerMinute: 4 / 6,
      peakPerMinute: 2,
      first: T0,
      last: T0 + 5 * MIN,
    });
  });

  it('widens the buckets of a long run to keep the series short, and reports rates per minute', () => {
    const t = throughput([T0, T0 + 1000 * MIN, T0 + 1000 * MIN + 1]);
    expect(t.bucketMinutes).toBe(5);
    expect(t.starts).toHaveLength(201);
    expect(t.peakPerMinute).toBe(2 / 5);
    expect(t.meanPerMinute).toBe(3 / (201 * 5));
    expect(throughput([])).toMatchObject({ starts: [], first: null, meanPerMinute: 0 });
  });
});

describe('ReportAggregator', () => {
  it('folds records, rejects, dead letters and undecodable records into exact numbers', () => {
    const agg = new ReportAggregator({ topic: 'sink', rejects: 'rejects', deadLetter: 'dlq' });
    agg.add('magpie.Conversation', tagged(0, { task_category: 'Math', difficulty: 'easy', input_quality: 'good', language: 'en', llama_guard_2: 'safe', instruct_reward: 1.5, min_neighbor_distance: 0.4 }));
    agg.add('magpie.Conversation', tagged(1, { task_category: 'Math', difficulty: 'hard', input_quality: 'excellent', language: 'en', llama_guard_2: 'unsafe\nS2', instruct_reward: -0.5, min_neighbor_distance: 0.02, is_duplicate: true }));
    agg.add('magpie.Conversation', tagged(2, { task_category: 'Knitting', language: 'de', response_finish_reason: 'length', tag_failures: [{ tag: 'difficulty', reason: 'unparseable' }, { tag: 'quality', reason: 'timeout' }] }));
    agg.add('magpie.Conversation', tagged(3, { task_category: 'Coding & Debugging', difficulty: 'easy', tag_failures: [{ tag: 'difficulty', reason: 'unparseable' }] }));
    agg.add('magpie.Instruction', { ...makeInstruction(4, 'Only an instruction?'), created_at: T0 + 3 * MIN });
    const pair: PreferencePair = {
      uuid: 'p', model: 'm', gen_input_configs: makeInstruction(5).gen_input_configs, instruction: 'Pair?', chosen: 'long chosen', rejected: 'no',
      chosen_reward: 2, rejected_reward: -1, reward_model: 'rm', gen_response_configs: makeConversation(5).gen_response_configs,
      candidates: [{ response: 'long chosen', reward: 2, finish_reason: 'stop', tokens: 3 }, { response: 'no', reward: -1, finish_reason: 'stop', tokens: 1 }],
      task_category: 'Math', other_task_category: [], intent: null, knowledge: null, difficulty: 'medium', input_quality: null, quality_explanation: null,
      llama_guard_2: null, language: 'en', min_neighbor_distance: null, min_similar_uuid: null, repeat_count: null, created_at: T0 + 3 * MIN + 5,
    };
    agg.add('magpie.PreferencePair', pair);
    agg.addReject(rejected('template_leak', 'clean', T0));
    agg.addReject(rejected('template_leak', 'respond', T0 + MIN, 'second reason'));
    agg.addReject(rejected('input_quality', 'filter', T0 + 2 * MIN));
    agg.addDeadLetter(deadLetter('INFERENCE_TIMEOUT', 'respond'));
    agg.addUndecodable('sink', 'SERDE_CORRUPT', 'sink[0]@9: bad bytes');
    expect(() => agg.add('magpie.DeadLetter', deadLetter('X', 'y'))).toThrow(/not part of a data report/);

    const r = agg.result('Run 1', T0 + 10 * MIN);
    expect(r.title).toBe('Run 1');
    expect(r.generatedAt).toBe(T0 + 10 * MIN);
    expect(r.sources).toEqual({ topic: 'sink', rejects: 'rejects', deadLetter: 'dlq' });
    expect(r.totals).toEqual({
      records: 6,
      bySchema: { 'magpie.Conversation': 4, 'magpie.Instruction': 1, 'magpie.PreferencePair': 1 },
      taggable: 5,
      rejects: 3,
      deadLetters: 1,
      undecodable: 1,
      truncatedResponses: 1,
      duplicates: 1,
      unsafe: 1,
      withTagFailures: 2,
    });
    // Known categories in the reference's order, then unknown ones by count.
    expect(r.taskCategories).toEqual([
      { label: 'Coding & Debugging', count: 1 },
      { label: 'Math', count: 3 },
      { label: 'Knitting', count: 1 },
    ]);
    expect(r.difficulty).toEqual([
      { label: 'very easy', count: 0 }, { label: 'easy', count: 2 }, { label: 'medium', count: 1 }, { label: 'hard', count: 1 }, { label: 'very hard', count: 0 },
      { label: UNTAGGED, count: 1 },
    ]);
    expect(r.inputQuality).toEqual([
      { label: 'very poor', count: 0 }, { label: 'poor', count: 0 }, { label: 'average', count: 0 }, { label: 'good', count: 1 }, { label: 'excellent', count: 1 },
      { label: UNTAGGED, count: 3 },
    ]);
    expect(r.languages).toEqual([{ label: 'en', count: 3 }, { label: 'de', count: 1 }, { label: UNTAGGED, count: 1 }]);
    expect(r.safety).toEqual([{ label: 'safe', count: 1 }, { label: 'unsafe S2', count: 1 }, { label: UNTAGGED, count: 3 }]);
    expect(r.tagFailures).toEqual([{ label: 'difficulty', count: 2 }, { label: 'quality', count: 1 }]);
    expect(r.tagCoverage).toEqual([
      { label: 'task_category', count: 5 }, { label: 'difficulty', count: 4 }, { label: 'input_quality', count: 2 }, { label: 'llama_guard_2', count: 2 },
      { label: 'instruct_reward', count: 3 }, { label: 'language', count: 4 }, { label: 'min_neighbor_distance', count: 2 },
    ]);
    // Instructions: 10, 20, 30, 40 characters, 'Only an instruction?' (20) and 'Pair?' (5).
    expect(r.instructionLength.summary).toEqual({ count: 6, min: 5, max: 40, mean: 125 / 6, median: 20, p10: 5, p90: 40 });
    // Responses: 100, 200, 300, 400 characters and the chosen 'long chosen' (11).
    expect(r.responseLength.summary).toMatchObject({ count: 5, min: 11, max: 400, median: 200 });
    expect(r.minNeighborDistance.summary).toMatchObject({ count: 2, min: 0.02, max: 0.4 });
    expect(r.reward.summary).toMatchObject({ count: 3, min: -0.5, max: 2, median: 1.5 });
    expect(r.preferenceMargin).toEqual({ bins: [{ from: 0, to: 5, count: 1 }], summary: { count: 1, min: 3, max: 3, mean: 3, median: 3, p10: 3, p90: 3 } });
    expect(r.rejectRules).toEqual([
      { key: 'template_leak', count: 2, stages: ['clean', 'respond'], example: 'failed template_leak' },
      { key: 'input_quality', count: 1, stages: ['filter'], example: 'failed input_quality' },
    ]);
    expect(r.deadLetterCodes).toEqual([{ key: 'INFERENCE_TIMEOUT', count: 1, stages: ['respond'], example: 'INFERENCE_TIMEOUT happened' }]);
    expect(r.undecodableReasons).toEqual([{ key: 'SERDE_CORRUPT', count: 1, stages: ['sink'], example: 'sink[0]@9: bad bytes' }]);
    // Records at 0, 30, 60, 90 s, 3 min and 3 min + 5 ms; rejects at 0, 1 and 2 min.
    expect(r.throughput).toMatchObject({ bucketMinutes: 1, records: [2, 2, 0, 2], rejects: [1, 1, 1, 0], peakPerMinute: 2, meanPerMinute: 1.5 });
  });

  it(`keeps the ${TOP_LANGUAGES} most frequent languages and folds the rest into one row`, () => {
    const agg = new ReportAggregator({ topic: 't' });
    const codes = Array.from({ length: TOP_LANGUAGES + 3 }, (_, i) => `l${String(i).padStart(2, '0')}`);
    codes.forEach((code, i) => {
      // Language i appears codes.length + 1 - i times.
      for (let k = 0; k <= codes.length - i; k++) agg.add('magpie.Conversation', tagged(k, { language: code }));
    });
    const langs = agg.result('t', 0).languages;
    expect(langs).toHaveLength(TOP_LANGUAGES + 1);
    expect(langs[0]).toEqual({ label: 'l00', count: codes.length + 1 });
    expect(langs[TOP_LANGUAGES]).toEqual({ label: 'other (3 languages)', count: 4 + 3 + 2 });
  });

  it('reports bare instructions without tag distributions', () => {
    const agg = new ReportAggregator({ topic: 't' });
    agg.add('magpie.Instruction', makeInstruction(1));
    const r = agg.result('t', 0);
    expect(r.totals.taggable).toBe(0);
    expect(r.tagCoverage).toEqual([]);
    expect(r.difficulty).toEqual([]);
    expect(r.taskCategories).toEqual([]);
    expect(r.responseLength.bins).toEqual([]);
    expect(r.instructionLength.summary?.count).toBe(1);
  });

  it('compares min_neighbor_distance across decoding settings and system prompts, older records grouped by their sampling', () => {
    const agg = new ReportAggregator({ topic: 't' });
    const withConfig = (i: number, distance: number | null, g: Partial<Conversation['gen_input_configs']>) => {
      const c = tagged(i, { min_neighbor_distance: distance });
      agg.add('magpie.Conversation', { ...c, gen_input_configs: { ...c.gen_input_configs, ...g } });
    };
    withConfig(0, 0.3, { decoding_key: 't1-p1', system_prompt_key: 'none' });
    withConfig(1, 0.5, { decoding_key: 't1-p1', system_prompt_key: 'math', system_prompt: 'You solve math.' });
    withConfig(2, 0.7, { decoding_key: 't1.25-p0.99', temperature: 1.25, top_p: 0.99, system_prompt_key: 'math', system_prompt: 'You solve math.' });
    withConfig(3, null, { decoding_key: 't1.25-p0.99', system_prompt_key: 'math' });
    // Written before mixtures: no keys.
    withConfig(4, 0.2, { temperature: 1.1, top_p: 0.995, system_prompt: 'Be helpful.' });
    const r = agg.result('t', 0);
    expect(r.distanceByDecoding.map((g) => [g.key, g.summary.count, g.summary.mean])).toEqual([['t1-p1', 2, 0.4], ['t1.1-p0.995', 1, 0.2], ['t1.25-p0.99', 1, 0.7]]);
    expect(r.distanceBySystemPrompt.map((g) => [g.key, g.summary.count])).toEqual([['custom', 1], ['math', 2], ['none', 1]]);
    expect(r.distanceBySystemPrompt.find((g) => g.key === 'math')!.summary).toMatchObject({ min: 0.5, max: 0.7, median: 0.6 });
  });
});

describe('latest records', () => {
  it('are the newest five by created_at, newest first, whatever order they were read in, with long texts cut', () => {
    const records = Array.from({ length: 9 }, (_, i) => tagged(i, {}, i === 8 ? 'x'.repeat(500) : `question ${i}?`));
    const forward = new ReportAggregator({ topic: 't' });
    const shuffled = new ReportAggregator({ topic: 't' });
    for (const r of records) forward.add('magpie.Conversation', r);
    for (const r of [...records].reverse().sort((a, b) => (a.uuid < b.uuid ? -1 : 1))) shuffled.add('magpie.Conversation', r);
    const latest = forward.result('r', 0).latest;
    expect(latest.map((s) => s.uuid)).toEqual([8, 7, 6, 5, 4].map((i) => records[i]!.uuid));
    expect(shuffled.result('r', 0).latest).toEqual(latest);
    expect(latest[0]!.instruction).toHaveLength(300);
    expect(latest[0]!.instruction.endsWith('…')).toBe(true);
    expect(latest[1]).toMatchObject({ instruction: 'question 7?', response: `${records[7]!.response.slice(0, 299)}…`, createdAt: records[7]!.created_at });
  });
});
