import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceBackend } from '../../../src/inference/backend.js';
import { createBackend } from '../../../src/inference/factory.js';
import { DIFFICULTY_LEVELS, INPUT_QUALITY_LEVELS, TASK_CATEGORIES } from '../../../src/processors/judge-prompts.js';
import type { Outcome } from '../../../src/processors/stage.js';
import { tagLanguage } from '../../../src/processors/tag-language.js';
import { tagLlmJudge } from '../../../src/processors/tag-llm-judge.js';
import { tagSafety } from '../../../src/processors/tag-safety.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { deps, inputs, mainValues, stageContext } from '../../unit/processors/harness.js';
import { smolLmGguf } from '../inference/models.js';
import { makeConversation } from '../../support/records.js';

/** Every tag stage on the embedded SmolLM2-135M backend: each record ends well-formed or with a recorded failure. */
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
let backend: InferenceBackend;
const records: Conversation[] = [
  ['How do I sort a list of numbers in Python?', 'Use sorted(numbers) or numbers.sort().'],
  ['What is the capital of France?', 'Paris.'],
  ['Write a short haiku about the autumn leaves that are falling in the park near my house.', 'Red leaves drift and fall / ...'],
  ['¿Cuál es la mejor manera de aprender a programar?', 'Practica todos los días con proyectos pequeños.'],
].map(([q, a], i) => makeConversation(i, q, a));
/** Of the four records, how many each judge task must tag well-formed (constrained decoding keeps the answer parseable). */
const MIN_WELL_FORMED = 3;

beforeAll(async () => {
  const modelPath = smolLmGguf();
  if (!modelPath) throw new Error('SmolLM2 GGUF missing: run bash scripts/fetch-models.sh');
  backend = await createBackend('smollm2', { type: 'llamacpp', modelPath, model: 'HuggingFaceTB/SmolLM2-135M-Instruct', family: 'smollm2', contextSize: 2048, sequences: 2, gpu: false } as never, logger);
}, 300_000);

afterAll(async () => {
  await backend?.close();
});

async function run(def: typeof tagLlmJudge | typeof tagSafety | typeof tagLanguage, config: Record<string, unknown>): Promise<Conversation[]> {
  const processor = def.create(def.config.parse(config) as never, deps({ backend }));
  const outcomes = (await processor.process(inputs(records), stageContext())) as Outcome<Conversation>[];
  expect(outcomes.map((o) => o.kind)).toEqual(records.map(() => 'emit'));
  return mainValues<Conversation>(outcomes);
}

/**
 * Checks that each record's tag is well-formed or its failure recorded with a reason, and that at least
 * `MIN_WELL_FORMED` of the records got the tag: a stage whose every answer fails would otherwise pass.
 */
function expectWellFormedFloor(out: Conversation[], tag: string, check: (r: Conversation) => void) {
  let wellFormed = 0;
  for (const r of out) {
    const failure = r.tag_failures.find((f) => f.tag === tag);
    if (failure) expect(failure.reason.length).toBeGreaterThan(0);
    else {
      check(r);
      wellFormed++;
    }
  }
  const failures = out.flatMap((r) => r.tag_failures.filter((f) => f.tag === tag).map((f) => f.reason));
  expect(wellFormed, `${tag}: ${wellFormed} of ${out.length} well-formed; failures: ${failures.join(' | ')}`).toBeGreaterThanOrEqual(MIN_WELL_FORMED);
}

describe('tag stages on the embedded SmolLM2 backend', () => {
  it('task_category', async () => {
    const out = await run(tagLlmJudge, { backend: 'smollm2', task: 'task_category', sampling: { maxTokens: 96 } });
    expectWellFormedFloor(out, 'task_category', (r) => {
      expect(TASK_CATEGORIES).toContain(r.task_category);
      for (const other of r.other_task_category) expect(TASK_CATEGORIES).toContain(other);
    });
  });

  it('difficulty with intent and knowledge', async () => {
    const out = await run(tagLlmJudge, { backend: 'smollm2', task: 'difficulty', sampling: { maxTokens: 160 } });
    expectWellFormedFloor(out, 'difficulty', (r) => {
      expect(DIFFICULTY_LEVELS).toContain(r.difficulty);
      expect(r.intent!.length).toBeGreaterThan(0);
      expect(r.knowledge!.length).toBeGreaterThan(0);
    });
  });

  it('input_quality with an explanation', async () => {
    const out = await run(tagLlmJudge, { backend: 'smollm2', task: 'input_quality', sampling: { maxTokens: 160 } });
    expectWellFormedFloor(out, 'input_quality', (r) => {
      expect(INPUT_QUALITY_LEVELS).toContain(r.input_quality);
      expect(r.quality_explanation!.length).toBeGreaterThan(0);
    });
  });

  // SmolLM2-135M does not follow the built-in policy prompt (its verdict is free text, not constrained like the
  // judge's JSON), so no floor of verdicts holds for it; well-formed verdicts are covered by the unit tests. What
  // holds on the real model: every record is asked again up to `retries` times and then flows with the reason.
  it('safety verdict: a verdict, or the failure after every retry with the model\'s last output', async () => {
    const out = await run(tagSafety, { backend: 'smollm2', prompt: 'builtin', sampling: { maxTokens: 16, retries: 2 } });
    for (const r of out) {
      const failure = r.tag_failures.find((f) => f.tag === 'llama_guard_2');
      if (failure) {
        expect(r.llama_guard_2).toBeNull();
        expect(failure.reason).toMatch(/^unparseable output after 3 attempts( \(cut at maxTokens 16\))?: .*; last output: ".*"$/s);
      } else {
        expect(r.llama_guard_2).toMatch(/^(safe|unsafe(\nS\d{1,2}(,S\d{1,2})*)?)$/);
      }
    }
  });

  it('language', async () => {
    const out = await run(tagLanguage, {});
    // franc is unreliable below a few words: short instructions may be 'und' or a near language.
    for (const r of out) expect(r.language).toMatch(/^([a-z]{2}|[a-z]{3})$/);
    expect(out[0]!.language).toBe('en');
    expect(out[2]!.language).toBe('en');
    expect(out[3]!.language).toBe('es');
  });
});
