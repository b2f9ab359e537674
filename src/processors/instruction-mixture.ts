import { z } from 'zod';
import { SYSTEM_PROMPTS } from '../inference/templates.js';
import type { SourceProgress } from '../serde/records.generated.js';

/**
 * The mixtures the released Magpie sets were sampled with: decoding settings in fixed proportions (Magpie-Pro:
 * 300K at T=1.0/top_p=1.0, 300K at 1.1/0.995, ...) and system prompts drawn by probability (distilabel).
 * Pure bookkeeping: which setting the next request uses, and what has been produced so far.
 */

export const decodingSettingSchema = z.strictObject({
  /** Recorded as gen_input_configs.decoding_key; default `t<temperature>-p<topP>`, e.g. t1.1-p0.995. */
  name: z.string().regex(/^[A-Za-z0-9_.=-]{1,64}$/, 'letters, digits, _ . = - only').optional(),
  temperature: z.number().min(0).max(5).default(1),
  topP: z.number().gt(0).max(1).default(1),
  maxTokens: z.number().int().min(1).default(512),
  /** Seed of the first request; request i uses seed + i, so a run can be repeated. */
  seed: z.number().int().optional(),
  /** Share of the instructions sampled with this setting, relative to the other settings' weights. */
  weight: z.number().positive().optional(),
  /** Exactly this many instructions with this setting; the stage's target is then the sum. */
  count: z.number().int().min(1).optional(),
});
export type DecodingSettingConfig = z.infer<typeof decodingSettingSchema>;

/** One setting, or a list mixed by weight or by exact counts. */
export const samplingMixtureSchema = z
  .union([decodingSettingSchema, z.array(decodingSettingSchema).min(1)])
  .default({ temperature: 1, topP: 1, maxTokens: 512 })
  .superRefine((sampling, ctx) => {
    const list = Array.isArray(sampling) ? sampling : [];
    if (!Array.isArray(sampling) && (sampling.weight !== undefined || sampling.count !== undefined)) {
      ctx.addIssue({ code: 'custom', message: 'weight and count belong to the settings of a list; a single setting needs neither' });
    }
    const withCount = list.filter((s) => s.count !== undefined).length;
    const withWeight = list.filter((s) => s.weight !== undefined).length;
    if (withCount > 0 && withWeight > 0) ctx.addIssue({ code: 'custom', message: 'give every setting a weight, or every setting a count, not both' });
    if (withCount > 0 && withCount < list.length) ctx.addIssue({ code: 'custom', message: `give every setting a count (${list.length - withCount} of ${list.length} have none)` });
    const keys = list.map(settingKey);
    keys.forEach((key, i) => {
      if (keys.indexOf(key) !== i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `two settings are both named '${key}': give one its own name` });
    });
  });
export type SamplingMixtureConfig = z.infer<typeof samplingMixtureSchema>;

export function settingKey(s: Pick<DecodingSettingConfig, 'name' | 'temperature' | 'topP'>): string {
  return s.name ?? `t${s.temperature}-p${s.topP}`;
}

export interface DecodingSetting {
  key: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  seed: number | undefined;
  weight: number;
  /** Exact number wanted (count mixtures only). */
  quota: number | undefined;
}

export function decodingSettings(sampling: SamplingMixtureConfig): DecodingSetting[] {
  const list = Array.isArray(sampling) ? sampling : [sampling];
  return list.map((s) => ({ key: settingKey(s), temperature: s.temperature, topP: s.topP, maxTokens: s.maxTokens, seed: s.seed, weight: s.weight ?? s.count ?? 1, quota: s.count }));
}

/** Instructions a mixture asks for in all (the sum of its counts), or undefined for a weighted one. */
export function mixtureTotal(sampling: SamplingMixtureConfig): number | undefined {
  const settings = decodingSettings(sampling);
  return settings.every((s) => s.quota !== undefined) ? settings.reduce((sum, s) => sum + s.quota!, 0) : undefined;
}

/**
 * Which decoding setting the next request uses. Each request goes to the setting furthest behind its share
 * (produced plus in flight, over its weight), so the realised mixture tracks the requested one at every point
 * of a run, and a rejected sample reopens its setting's gap. With counts every setting stops at its quota.
 */
export class DecodingPlan {
  private readonly produced = new Map<string, number>();
  private readonly pending = new Map<string, number>();
  /** Produced by earlier runs under settings no longer in the mixture: they still count toward the total. */
  private carried = 0;
  private readonly quotas: boolean;
  rejected = 0;
  /** Requests started so far (across restarts): request i uses seed + i. */
  requests = 0;

  constructor(
    readonly settings: readonly DecodingSetting[],
    /** Instructions wanted in all; undefined: forever. */
    readonly total: number | undefined,
  ) {
    for (const s of settings) {
      this.produced.set(s.key, 0);
      this.pending.set(s.key, 0);
    }
    this.quotas = settings.every((s) => s.quota !== undefined);
  }

  get producedTotal(): number {
    return this.carried + sum(this.produced.values());
  }

  private get pendingTotal(): number {
    return sum(this.pending.values());
  }

  get finished(): boolean {
    if (this.quotas) return this.settings.every((s) => this.produced.get(s.key)! >= s.quota!);
    return this.total !== undefined && this.producedTotal >= this.total;
  }

  /** The setting and sample count of the next request, or undefined when none may start now. */
  take(maxSamples: number): { setting: DecodingSetting; n: number; index: number } | undefined {
    const open = this.settings.filter((s) => s.quota === undefined || this.inFlightOrDone(s) < s.quota);
    if (open.length === 0) return undefined;
    const left = this.total === undefined || this.quotas ? Infinity : this.total - this.producedTotal - this.pendingTotal;
    if (left <= 0) return undefined;
    const setting = open.reduce((best, s) => (this.inFlightOrDone(s) / s.weight < this.inFlightOrDone(best) / best.weight ? s : best));
    const n = Math.min(maxSamples, left, setting.quota === undefined ? Infinity : setting.quota - this.inFlightOrDone(setting));
    this.pending.set(setting.key, this.pending.get(setting.key)! + n);
    return { setting, n, index: this.requests++ };
  }

  private inFlightOrDone(s: DecodingSetting): number {
    return this.produced.get(s.key)! + this.pending.get(s.key)!;
  }

  /** One sample of `key` handed on: to the output (clean) or to the rejects. */
  settle(key: string, clean: boolean): void {
    this.pending.set(key, this.pending.get(key)! - 1);
    if (clean) this.produced.set(key, this.produced.get(key)! + 1);
    else this.rejected++;
  }

  /** Samples of a request that failed: they may be requested again. */
  cancel(key: string, n: number): void {
    this.pending.set(key, this.pending.get(key)! - n);
  }

  /**
   * Continues from committed progress. What settings no longer in the mixture produced still counts toward a
   * total; a count mixture counts per setting, so a renamed setting starts from zero.
   */
  restore(progress: SourceProgress): void {
    for (const [key, n] of Object.entries(progress.produced_by_key)) if (this.produced.has(key)) this.produced.set(key, n);
    this.carried = this.quotas ? 0 : Math.max(0, progress.produced - sum(this.produced.values()));
    this.rejected = progress.rejected;
    this.requests = progress.requests;
  }

  snapshot(stage: string): SourceProgress {
    return { stage, produced: this.producedTotal, rejected: this.rejected, requests: this.requests, produced_by_key: Object.fromEntries(this.produced), updated_at: Date.now() };
  }
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

const BUILT_IN_KEYS = ['math', 'code', 'translation', 'multiturn'] as const;
/** The key of "no system prompt" in a mixture. */
export const NO_SYSTEM_PROMPT = 'none';

/**
 * System prompts drawn per request with probabilities, distilabel style:
 *   { none: 0.5, math: 0.2, code: 0.2, legal: { text: "You are ...", probability: 0.1 } }
 * `none` means no system prompt; math, code, translation and multiturn are the built-in prompts.
 */
export const systemPromptMixtureSchema = z
  .record(
    z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - only'),
    z.union([z.number().min(0).max(1), z.strictObject({ text: z.string().min(1), probability: z.number().min(0).max(1) })]),
  )
  .superRefine((mixture, ctx) => {
    const entries = Object.entries(mixture);
    if (entries.length === 0) ctx.addIssue({ code: 'custom', message: 'give at least one system prompt key' });
    let total = 0;
    for (const [key, value] of entries) {
      total += typeof value === 'number' ? value : value.probability;
      if (typeof value === 'number' && key !== NO_SYSTEM_PROMPT && !(BUILT_IN_KEYS as readonly string[]).includes(key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `'${key}' is not ${NO_SYSTEM_PROMPT} or a built-in prompt (${BUILT_IN_KEYS.join(', ')}): give { text, probability }` });
      }
    }
    if (entries.length > 0 && Math.abs(total - 1) > 1e-6) ctx.addIssue({ code: 'custom', message: `probabilities add up to ${total}, not 1` });
  });
export type SystemPromptMixtureConfig = z.infer<typeof systemPromptMixtureSchema>;

export interface SystemPromptChoice {
  key: string;
  /** undefined for `none`. */
  text: string | undefined;
  probability: number;
}

export function systemPromptChoices(mixture: SystemPromptMixtureConfig): SystemPromptChoice[] {
  return Object.entries(mixture).map(([key, value]) =>
    typeof value === 'number'
      ? { key, text: key === NO_SYSTEM_PROMPT ? undefined : SYSTEM_PROMPTS[key as (typeof BUILT_IN_KEYS)[number]], probability: value }
      : { key, text: value.text, probability: value.probability },
  );
}

/** The choice `u` (uniform in [0, 1)) falls on. */
export function drawSystemPrompt<C extends SystemPromptChoice>(choices: readonly C[], u: number): C {
  let acc = 0;
  for (const c of choices) {
    acc += c.probability;
    if (u < acc) return c;
  }
  return choices.findLast((c) => c.probability > 0) ?? choices.at(-1)!;
}

/** A small seeded generator (mulberry32): the same seed gives the same draws, so a run can be repeated. */
export function seededUniform(seed: number): number {
  let t = (seed + 0x6d2b79f5) | 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
