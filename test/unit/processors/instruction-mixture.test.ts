import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Completion, CompletionRequest, InferenceBackend } from '../../../src/inference/backend.js';
import { SYSTEM_PROMPTS } from '../../../src/inference/templates.js';
import { generateInstructions, InstructionGenerator } from '../../../src/processors/generate-instructions.js';
import { decodingSettings, DecodingPlan, drawSystemPrompt, samplingMixtureSchema, seededUniform, systemPromptChoices, systemPromptMixtureSchema } from '../../../src/processors/instruction-mixture.js';
import type { Outcome, StageContext, StateRestorer } from '../../../src/processors/stage.js';
import type { Instruction, SourceProgress } from '../../../src/serde/records.generated.js';

const ctx = (): StageContext => ({ logger: pino({ level: 'silent' }), signal: new AbortController().signal, heartbeat: async () => undefined });

/** Answers every completion request with `n` instructions; `clean(i)` false makes the i-th sample an empty one. */
class CountingBackend implements InferenceBackend {
  readonly id = 'fake:model';
  readonly model = 'fake-model';
  readonly requests: CompletionRequest[] = [];
  private sample = 0;
  constructor(private readonly clean: (i: number) => boolean = () => true) {}
  async complete(req: CompletionRequest): Promise<Completion[]> {
    this.requests.push(req);
    return Array.from({ length: req.n ?? 1 }, () => {
      const i = this.sample++;
      return { text: this.clean(i) ? `Question number ${i}?` : '  ', finishReason: 'stop' as const, tokens: 4 };
    });
  }
  async chat(): Promise<Completion[]> {
    throw new Error('not used');
  }
  async close(): Promise<void> {}
}

const config = (extra: Record<string, unknown>) => generateInstructions.config.parse({ backend: 'b', template: 'llama3', samplesPerRequest: 8, inFlight: 3, ...extra });

interface Drained {
  instructions: Instruction[];
  rejected: number;
  progress: SourceProgress[];
}

async function drain(gen: InstructionGenerator, maxBatch = 10): Promise<Drained> {
  const out: Drained = { instructions: [], rejected: 0, progress: [] };
  for (;;) {
    const batch: Outcome<Instruction | SourceProgress>[] = await gen.next(maxBatch, ctx());
    if (batch.length === 0) return out;
    for (const o of batch) {
      if (o.kind === 'reject') out.rejected++;
      else if (o.kind === 'emit') for (const r of o.records) (r.port === 'progress' ? out.progress : out.instructions).push(r.value as never);
    }
  }
}

const restorerOf = (records: [string, SourceProgress][]): StateRestorer => ({
  topicOf: (port) => `${port}-topic`,
  restore: async (port, onRecord) => {
    expect(port).toBe('progress');
    records.forEach(([key, value], i) => onRecord(key, value, BigInt(i)));
    return { records: records.length, next: BigInt(records.length) };
  },
});

const byKey = (instructions: Instruction[], field: 'decoding_key' | 'system_prompt_key') => {
  const counts: Record<string, number> = {};
  for (const i of instructions) counts[i.gen_input_configs[field]!] = (counts[i.gen_input_configs[field]!] ?? 0) + 1;
  return counts;
};

const PRO_MIXTURE = [
  { temperature: 1.0, topP: 1.0, count: 30 },
  { temperature: 1.1, topP: 0.995, count: 30 },
  { temperature: 1.2, topP: 0.995, count: 30 },
  { temperature: 1.25, topP: 0.99, count: 10 },
];

describe('decoding mixtures', () => {
  it('realises a count mixture exactly, every sample recording its setting, even when samples are rejected', async () => {
    // Every 7th sample is empty and rejected: its setting's gap reopens and is requested again.
    const backend = new CountingBackend((i) => i % 7 !== 3);
    const gen = new InstructionGenerator(backend, config({ sampling: PRO_MIXTURE }), 'instructions');
    const { instructions, rejected, progress } = await drain(gen);
    expect(rejected).toBeGreaterThan(0);
    expect(instructions).toHaveLength(100);
    expect(byKey(instructions, 'decoding_key')).toEqual({ 't1-p1': 30, 't1.1-p0.995': 30, 't1.2-p0.995': 30, 't1.25-p0.99': 10 });
    for (const i of instructions) {
      const setting = PRO_MIXTURE.find((s) => `t${s.temperature}-p${s.topP}` === i.gen_input_configs.decoding_key)!;
      expect(i.gen_input_configs).toMatchObject({ temperature: setting.temperature, top_p: setting.topP });
    }
    // Each request used the setting its records say.
    for (const req of backend.requests) expect(PRO_MIXTURE.some((s) => s.temperature === req.temperature && s.topP === req.topP)).toBe(true);
    expect(progress.at(-1)).toMatchObject({ stage: 'instructions', produced: 100, rejected, produced_by_key: { 't1-p1': 30, 't1.1-p0.995': 30, 't1.2-p0.995': 30, 't1.25-p0.99': 10 } });
  });

  it('keeps a weighted mixture within sampling error of its weights at every point of the run', async () => {
    const gen = new InstructionGenerator(new CountingBackend(), config({ count: 400, samplesPerRequest: 4, sampling: [{ temperature: 1, weight: 3 }, { temperature: 1.2, topP: 0.995, weight: 1 }] }));
    const { instructions } = await drain(gen);
    expect(instructions).toHaveLength(400);
    const counts = byKey(instructions, 'decoding_key');
    // Binomial sd at p=0.25, n=400 is about 8.7; the plan is far tighter than that.
    expect(Math.abs(counts['t1-p1']! - 300)).toBeLessThanOrEqual(9);
    const first100 = byKey(instructions.slice(0, 100), 'decoding_key');
    expect(Math.abs(first100['t1-p1']! - 75)).toBeLessThanOrEqual(9);
  });

  it('continues from committed progress and stays finished once the target is reached', async () => {
    const committed: SourceProgress = { stage: 'instructions', produced: 90, rejected: 5, requests: 12, produced_by_key: { 't1-p1': 30, 't1.1-p0.995': 30, 't1.2-p0.995': 25, 't1.25-p0.99': 5 }, updated_at: 0 };
    const backend = new CountingBackend();
    const gen = new InstructionGenerator(backend, config({ sampling: PRO_MIXTURE.map((s) => ({ ...s, seed: 100 })) }), 'instructions');
    // Another stage's progress on the same topic is not ours.
    await gen.init(ctx(), restorerOf([['other', { ...committed, produced: 1, produced_by_key: {} }], ['instructions', committed]]));
    const { instructions, progress } = await drain(gen);
    expect(byKey(instructions, 'decoding_key')).toEqual({ 't1.2-p0.995': 5, 't1.25-p0.99': 5 });
    expect(progress.at(-1)).toMatchObject({ produced: 100, rejected: 5 });
    // Seeds continue after the requests of earlier runs (8 samples each) instead of repeating their samples.
    expect(Math.min(...backend.requests.map((r) => r.seed!))).toBe(100 + 12 * 8);

    const restarted = new InstructionGenerator(backend, config({ sampling: PRO_MIXTURE }), 'instructions');
    await restarted.init(ctx(), restorerOf([['instructions', progress.at(-1)!]]));
    const before = backend.requests.length;
    expect(await restarted.next(10, ctx())).toEqual([]);
    expect(backend.requests.length).toBe(before);
  });

  it('counts a single-setting target across restarts too', async () => {
    const gen = new InstructionGenerator(new CountingBackend(), config({ count: 20, sampling: { temperature: 0.8, topP: 1 } }), 'ins');
    await gen.init(ctx(), restorerOf([['ins', { stage: 'ins', produced: 15, rejected: 0, requests: 3, produced_by_key: { 't0.8-p1': 15 }, updated_at: 0 }]]));
    const { instructions } = await drain(gen);
    expect(instructions).toHaveLength(5);
  });

  it('counts what earlier runs produced under other settings toward a total, not toward a count mixture', async () => {
    const earlier: SourceProgress = { stage: 'ins', produced: 15, rejected: 0, requests: 3, produced_by_key: { 't1-p1': 15 }, updated_at: 0 };
    const changed = new InstructionGenerator(new CountingBackend(), config({ count: 20, sampling: { temperature: 0.7 } }), 'ins');
    await changed.init(ctx(), restorerOf([['ins', earlier]]));
    const { instructions, progress } = await drain(changed);
    expect(instructions).toHaveLength(5);
    expect(progress.at(-1)).toMatchObject({ produced: 20, produced_by_key: { 't0.7-p1': 5 } });

    const quotas = new InstructionGenerator(new CountingBackend(), config({ sampling: [{ temperature: 0.7, count: 4 }] }), 'ins');
    await quotas.init(ctx(), restorerOf([['ins', earlier]]));
    expect((await drain(quotas)).instructions).toHaveLength(4);
  });

  it('validates mixtures with messages that say what to change', () => {
    const issues = (value: unknown) => {
      const r = samplingMixtureSchema.safeParse(value);
      return r.success ? [] : r.error.issues.map((i) => i.message);
    };
    expect(issues([{ temperature: 1, weight: 1 }, { temperature: 1.1, count: 3 }])).toContain('give every setting a weight, or every setting a count, not both');
    expect(issues([{ temperature: 1, count: 2 }, { temperature: 1.1 }])).toContain('give every setting a count (1 of 2 have none)');
    expect(issues([{ temperature: 1 }, { temperature: 1 }])[0]).toMatch(/both named 't1-p1'/);
    expect(issues({ temperature: 1, weight: 2 })[0]).toMatch(/belong to the settings of a list/);
    expect(issues(PRO_MIXTURE)).toEqual([]);
    expect(() => new InstructionGenerator(new CountingBackend(), config({ count: 5, sampling: PRO_MIXTURE }), 'ins')).toThrow(/count is 5 but the sampling counts add up to 100/);
  });

  it('hands out requests to the setting furthest behind its share', () => {
    const plan = new DecodingPlan(decodingSettings([{ temperature: 1, topP: 1, maxTokens: 8, weight: 2 }, { temperature: 2, topP: 1, maxTokens: 8, weight: 1 }]), 30);
    const keys: string[] = [];
    for (let i = 0; i < 6; i++) keys.push(plan.take(5)!.setting.key);
    expect(keys.filter((k) => k === 't1-p1')).toHaveLength(4);
    expect(plan.take(5)).toBeUndefined();
  });
});

describe('system-prompt mixtures', () => {
  const mixture = { none: 0.5, math: 0.2, code: 0.2, legal: { text: 'You are an AI assistant for legal questions.', probability: 0.1 } };

  it('draws each request\'s system prompt by probability and records its key and text', async () => {
    const backend = new CountingBackend();
    const gen = new InstructionGenerator(backend, config({ count: 2000, samplesPerRequest: 1, inFlight: 8, sampling: { seed: 1 }, systemPrompts: mixture }));
    const { instructions } = await drain(gen, 500);
    const counts = byKey(instructions, 'system_prompt_key');
    // Within 4 binomial standard deviations of n·p.
    for (const [key, p] of [['none', 0.5], ['math', 0.2], ['code', 0.2], ['legal', 0.1]] as const) {
      expect(Math.abs(counts[key]! - 2000 * p)).toBeLessThan(4 * Math.sqrt(2000 * p * (1 - p)));
    }
    const math = instructions.find((i) => i.gen_input_configs.system_prompt_key === 'math')!;
    expect(math.gen_input_configs.system_prompt).toBe(SYSTEM_PROMPTS.math);
    expect(math.gen_input_configs.pre_query_template).toContain(SYSTEM_PROMPTS.math);
    const none = instructions.find((i) => i.gen_input_configs.system_prompt_key === 'none')!;
    expect(none.gen_input_configs).toMatchObject({ system_prompt: null, pre_query_template: '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n' });
    const legal = instructions.find((i) => i.gen_input_configs.system_prompt_key === 'legal')!;
    expect(legal.gen_input_configs.pre_query_template).toContain('legal questions');
    // The request carried the prompt the record names.
    expect(new Set(backend.requests.map((r) => r.prompt)).size).toBe(4);
  });

  it('draws the same prompts again for the same seeds', () => {
    const choices = systemPromptChoices(systemPromptMixtureSchema.parse(mixture));
    const draws = (seed: number) => Array.from({ length: 50 }, (_, i) => drawSystemPrompt(choices, seededUniform(seed + i)).key);
    expect(draws(7)).toEqual(draws(7));
    expect(drawSystemPrompt(choices, 0).key).toBe('none');
    expect(drawSystemPrompt(choices, 0.999999).key).toBe('legal');
  });

  it('rejects probabilities that do not add up and unknown keys without text', async () => {
    const messages = (value: unknown) => {
      const r = systemPromptMixtureSchema.safeParse(value);
      return r.success ? [] : r.error.issues.map((i) => i.message).join('\n');
    };
    expect(messages({ none: 0.5, math: 0.2 })).toMatch(/add up to 0.7, not 1/);
    expect(messages({ none: 0.5, poetry: 0.5 })).toMatch(/'poetry' is not none or a built-in prompt/);
    const both = new InstructionGenerator(new CountingBackend(), config({ template: { family: 'llama3', systemPrompt: 'math' }, systemPrompts: { none: 1 } }));
    await expect(both.init(ctx(), restorerOf([]))).rejects.toThrow(/not both/);
  });
});
