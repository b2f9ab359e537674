import { describe, expect, it } from 'vitest';
import { filter } from '../../../src/processors/filter.js';
import { filterRulesSchema, firstFailedRule, ruleFailure, type FilterRule } from '../../../src/processors/filter-rules.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';
import { deps, inputs, mainValues, stageContext } from './harness.js';

const rule = (input: unknown): FilterRule => filterRulesSchema.parse([input])[0]!;

function tagged(overrides: Partial<Conversation> = {}): Conversation {
  return {
    ...makeConversation(1, 'Explain how binary search works.'),
    input_quality: 'good',
    language: 'en',
    instruct_reward: 0.5,
    min_neighbor_distance: 0.3,
    is_duplicate: false,
    tag_failures: [],
    ...overrides,
  };
}

describe('filter rules', () => {
  const cases: [string, unknown, Partial<Conversation>, Partial<Conversation>, string][] = [
    ['eq', { field: 'language', eq: 'en' }, { language: 'en' }, { language: 'fr' }, "language 'fr' is not en"],
    ['eq boolean', { field: 'is_duplicate', eq: false }, { is_duplicate: false }, { is_duplicate: true }, 'is_duplicate true is not false'],
    ['neq', { field: 'response_finish_reason', neq: 'length' }, { response_finish_reason: 'stop' }, { response_finish_reason: 'length' }, 'response_finish_reason is length'],
    ['in', { field: 'input_quality', in: ['good', 'excellent'] }, { input_quality: 'excellent' }, { input_quality: 'poor' }, "input_quality 'poor' not in [good, excellent]"],
    ['notIn', { field: 'task_category', notIn: ['Others'] }, { task_category: 'Math' }, { task_category: 'Others' }, "task_category 'Others' is in [Others]"],
    ['gt', { field: 'instruct_reward', gt: -1.5 }, { instruct_reward: -1.4 }, { instruct_reward: -1.5 }, 'instruct_reward -1.5 not > -1.5'],
    ['gte', { field: 'instruct_reward', gte: -1.5 }, { instruct_reward: -1.5 }, { instruct_reward: -1.6 }, 'instruct_reward -1.6 not >= -1.5'],
    ['lt', { field: 'min_neighbor_distance', lt: 0.5 }, { min_neighbor_distance: 0.4 }, { min_neighbor_distance: 0.5 }, 'min_neighbor_distance 0.5 not < 0.5'],
    ['lte', { field: 'min_neighbor_distance', lte: 0.5 }, { min_neighbor_distance: 0.5 }, { min_neighbor_distance: 0.6 }, 'min_neighbor_distance 0.6 not <= 0.5'],
    ['between', { field: 'instruction_length', between: [5, 4000] }, { instruction_length: 5 }, { instruction_length: 4001 }, 'instruction_length 4001 not between 5 and 4000'],
    ['exists true', { field: 'llama_guard_2', exists: true }, { llama_guard_2: 'safe' }, { llama_guard_2: null }, 'llama_guard_2 is missing'],
    ['exists false', { field: 'llama_guard_2', exists: false }, { llama_guard_2: null }, { llama_guard_2: 'safe' }, "llama_guard_2 is present ('safe')"],
    ['empty true', { field: 'tag_failures', empty: true }, { tag_failures: [] }, { tag_failures: [{ tag: 'difficulty', reason: 'x' }] }, 'tag_failures is not empty (1 item: [{"tag":"difficulty","reason":"x"}])'],
    ['empty false', { field: 'other_task_category', empty: false }, { other_task_category: ['Math'] }, { other_task_category: [] }, 'other_task_category is empty'],
  ];

  it.each(cases)('%s passes and fails with a reason', (_, input, passing, failing, reason) => {
    const r = rule(input);
    expect(ruleFailure(r, tagged(passing))).toBeUndefined();
    expect(ruleFailure(r, tagged(failing))).toBe(reason);
  });

  it('limits line breaks in a text field, with an exemption by another field (the Llama-3.1 Pro-500K rule)', () => {
    const [rule] = filterRulesSchema.parse([{ field: 'response', maxNewlines: 4, unless: { field: 'task_category', in: ['Coding & Debugging'] } }]);
    const text = (lines: number) => Array.from({ length: lines }, (_, i) => `line ${i}`).join('\n');
    expect(ruleFailure(rule!, { ...makeConversation(1), response: text(5), task_category: 'Math' })).toBeUndefined();
    expect(ruleFailure(rule!, { ...makeConversation(1), response: text(6), task_category: 'Math' })).toBe('response has 5 line breaks, more than 4');
    expect(ruleFailure(rule!, { ...makeConversation(1), response: text(60), task_category: 'Coding & Debugging' })).toBeUndefined();
    expect(rule!.name).toBe('response_maxNewlines');
  });

  it('reads dotted paths', () => {
    const r = rule({ field: 'gen_input_configs.temperature', lte: 1 });
    expect(r.name).toBe('gen_input_configs_temperature_lte');
    expect(ruleFailure(r, tagged())).toBeUndefined();
    expect(ruleFailure(r, tagged({ gen_input_configs: { ...tagged().gen_input_configs, temperature: 1.2 } }))).toBe('gen_input_configs.temperature 1.2 not <= 1');
  });

  it('fails a missing value unless allowMissing', () => {
    for (const input of [{ field: 'instruct_reward', gt: 0 }, { field: 'input_quality', in: ['good'] }, { field: 'language', eq: 'en' }, { field: 'min_neighbor_distance', between: [0.1, 2] }]) {
      const record = tagged({ instruct_reward: null, input_quality: null, language: null, min_neighbor_distance: null });
      expect(ruleFailure(rule(input), record)).toBe(`${input.field} is missing`);
      expect(ruleFailure(rule({ ...input, allowMissing: true }), record)).toBeUndefined();
    }
    expect(ruleFailure(rule({ field: 'no_such_field', gt: 0 }), tagged())).toBe('no_such_field is missing');
  });

  it('says when a numeric rule meets a non-number', () => {
    expect(ruleFailure(rule({ field: 'language', gt: 1 }), tagged())).toBe("language 'en' is not a number");
  });

  it('derives names and rejects duplicates and malformed rules with the field named', () => {
    expect(rule({ field: 'input_quality', in: ['good'] }).name).toBe('input_quality_in');
    expect(rule({ field: 'input_quality', in: ['good'], name: 'quality' }).name).toBe('quality');
    const dup = filterRulesSchema.safeParse([{ field: 'instruct_reward', gt: 0 }, { field: 'instruct_reward', gt: 1 }]);
    expect(dup.success).toBe(false);
    expect(dup.error!.issues[0]!.path).toEqual([1, 'name']);
    const none = filterRulesSchema.safeParse([{ field: 'language' }]);
    expect(none.error!.issues[0]!.message).toMatch(/exactly one of eq, neq, in/);
    const two = filterRulesSchema.safeParse([{ field: 'language', eq: 'en', neq: 'fr' }]);
    expect(two.error!.issues[0]!.message).toMatch(/got eq, neq/);
    expect(filterRulesSchema.safeParse([{ field: 'x', between: [3, 1] }]).success).toBe(false);
    expect(filterRulesSchema.safeParse([{ field: 'x', gt: 'high' }]).success).toBe(false);
    expect(filterRulesSchema.safeParse([{ field: 'x', eq: 1, typo: true }]).success).toBe(false);
    expect(filterRulesSchema.safeParse([]).success).toBe(false);
  });

  it('names the first failed rule in declaration order', () => {
    const rules = filterRulesSchema.parse([
      { field: 'input_quality', in: ['good', 'excellent'] },
      { field: 'language', eq: 'en' },
      { field: 'instruct_reward', gt: -1.5 },
    ]);
    expect(firstFailedRule(rules, tagged({ language: 'de', instruct_reward: -3 }))).toEqual({ rule: 'language_eq', reason: "language 'de' is not en" });
    expect(firstFailedRule(rules, tagged({ input_quality: 'poor', language: 'de' }))).toEqual({ rule: 'input_quality_in', reason: "input_quality 'poor' not in [good, excellent]" });
    expect(firstFailedRule(rules, tagged())).toBeUndefined();
  });
});

describe('filter stage', () => {
  it('passes records that meet every rule and rejects the rest with the first failed rule', async () => {
    const cfg = filter.config.parse({
      rules: [
        { field: 'input_quality', in: ['good', 'excellent'] },
        { field: 'language', eq: 'en' },
        { field: 'is_duplicate', eq: false },
        { field: 'tag_failures', empty: true },
      ],
    });
    const processor = filter.create(cfg, deps());
    const records = [tagged(), tagged({ uuid: 'b', is_duplicate: true, language: 'fr' }), tagged({ uuid: 'c', tag_failures: [{ tag: 'difficulty', reason: 'unparseable' }] })];
    const out = await processor.process(inputs(records), stageContext());
    expect(out).toHaveLength(3);
    expect(mainValues([out[0]!])).toEqual([records[0]]);
    expect(out[1]).toEqual({ kind: 'reject', rule: 'language_eq', reason: "language 'fr' is not en", record: records[1] });
    expect(out[2]).toMatchObject({ kind: 'reject', rule: 'tag_failures_empty' });
  });
});
