import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../core/errors.js';
import { sleep, withRetry } from '../core/retry.js';
import type { InferenceBackend } from '../inference/backend.js';
import { loadTemplate } from '../inference/template-derive.js';
import { templateConfigSchema, type ResolvedTemplate } from '../inference/templates.js';
import type { Instruction, SourceProgress } from '../serde/records.generated.js';
import { cleanInstruction, cleanupConfigSchema, DEFAULT_CLEANUP, DEFAULT_INSTRUCTION_STOP, instructionStops, instructionStopSchema } from './instruction-cleanup.js';
import {
  decodingSettings, DecodingPlan, drawSystemPrompt, mixtureTotal, NO_SYSTEM_PROMPT, samplingMixtureSchema, seededUniform, systemPromptChoices,
  systemPromptMixtureSchema, type DecodingSetting, type SystemPromptChoice,
} from './instruction-mixture.js';
import { defineSource, reject, type Outcome, type Source, type StageContext, type StateRestorer } from './stage.js';

const config = z.object({
  backend: z.string(),
  template: templateConfigSchema,
  /** One decoding setting, or a list mixed by weight or exact counts (each instruction records its setting). */
  sampling: samplingMixtureSchema,
  /** System prompts drawn per request by probability (none, math, code, translation or your own text). */
  systemPrompts: systemPromptMixtureSchema.optional(),
  /** Instructions sampled per request (vLLM `n`): diversity comes from sampling alone. */
  samplesPerRequest: z.number().int().min(1).max(256).default(4),
  /**
   * Requests kept in flight. Default: enough for the backend's whole batch (its concurrency ÷ samplesPerRequest,
   * at least 2; 8 when the backend does not say), so the source alone could fill the server; the source runner's backlog bound keeps it from
   * running further ahead of the stages that read its output.
   */
  inFlight: z.number().int().min(1).max(4096).optional(),
  /**
   * Stop once this many instructions are in the output topic, counted across restarts (the progress port
   * keeps the count); forever when absent. With a count mixture the target is the sum of its counts.
   */
  count: z.number().int().min(1).optional(),
  /** Upper bound on requests started per second; unbounded when absent. */
  requestsPerSecond: z.number().positive().optional(),
  cleanup: cleanupConfigSchema.default(DEFAULT_CLEANUP),
  /** Stop strings on top of the template's (reference: both on; see instructionStopSchema). */
  stop: instructionStopSchema.default(DEFAULT_INSTRUCTION_STOP),
  /**
   * Token ids the instruction's first token must not be; `markdown-headers` takes the template's `#`…`####`
   * ids (the reference's Llama-3.1 recipe). Off by default.
   */
  firstTokenBans: z.union([z.literal('markdown-headers'), z.array(z.number().int().nonnegative()).min(1)]).optional(),
});

type Config = z.infer<typeof config>;

interface Ready {
  outcome: Outcome<Instruction>;
  key: string;
  clean: boolean;
}

/** The request prompt for each system-prompt choice, built once. */
interface PromptChoice extends SystemPromptChoice {
  prompt: string;
}

/** What every instruction request sends besides sampling: resolved once, before the first request. */
interface InstructionPrompts {
  resolved: ResolvedTemplate;
  prompts: PromptChoice[];
  stop: string[];
  stopTokenIds: number[];
  firstTokenBans: number[];
}

/**
 * Magpie step 1: send only the pre-query template as a raw completion prompt, so the aligned model writes a
 * user query by itself. Keeps `inFlight` requests running and hands out results as they complete. Each
 * request draws its decoding setting and system prompt from the stage's mixtures; the progress port holds
 * what has been committed, so a target count holds across restarts.
 */
export class InstructionGenerator implements Source<Instruction | SourceProgress> {
  private setup: Promise<InstructionPrompts> | undefined;
  private readonly plan: DecodingPlan;
  /** A target count is one count across every instance and restart: one writer at a time. */
  readonly exclusive: boolean;
  private readonly ready: Ready[] = [];
  private inflight = 0;
  /** Requests kept running at once. */
  readonly inFlight: number;
  private lastStart = 0;
  private failure: unknown;
  private wake: (() => void) | undefined;

  constructor(
    private readonly backend: InferenceBackend,
    private readonly config: Config,
    /** Key of this source's progress record. */
    private readonly stageName = 'instructions',
  ) {
    const total = mixtureTotal(config.sampling);
    if (total !== undefined && config.count !== undefined && total !== config.count) {
      throw new ConfigError(`stage ${stageName}: count is ${config.count} but the sampling counts add up to ${total}; drop count or make them agree`, { count: config.count });
    }
    this.plan = new DecodingPlan(decodingSettings(config.sampling), total ?? config.count);
    this.inFlight = config.inFlight ?? (backend.concurrency === undefined ? 8 : Math.max(2, Math.ceil(backend.concurrency / config.samplesPerRequest)));
    this.exclusive = this.plan.total !== undefined;
  }

  /** The template (derived from the model's own for `auto`), the pre-query of each system prompt, the stops: once. */
  private instructionPrompts(): Promise<InstructionPrompts> {
    this.setup ??= loadTemplate(this.config.template, this.backend).then((resolved) => {
      const { template } = resolved;
      if (this.config.systemPrompts && resolved.systemPrompt !== undefined) {
        throw new ConfigError(`stage ${this.stageName}: give template.systemPrompt or systemPrompts, not both`);
      }
      const bans = this.config.firstTokenBans;
      if (bans === 'markdown-headers' && !template.markdownHeaderTokenIds) {
        throw new ConfigError(`firstTokenBans: markdown-headers: template ${template.name} does not know its markdown-header token ids; list them instead`, { field: 'firstTokenBans' });
      }
      const choices = this.config.systemPrompts
        ? systemPromptChoices(this.config.systemPrompts)
        : [{ key: resolved.systemPrompt === undefined ? NO_SYSTEM_PROMPT : 'template', text: resolved.systemPrompt, probability: 1 }];
      return {
        resolved,
        // No system prompt of the stage's own: the template's instruction prompt (with the model's default system turn).
        prompts: choices.map((c) => ({ ...c, prompt: c.text === undefined || c.text === resolved.systemPrompt ? resolved.instructionPrompt : template.preQuery(c.text) })),
        stop: instructionStops(template, this.config.stop),
        stopTokenIds: [...template.stopTokenIds],
        firstTokenBans: bans === undefined ? [] : bans === 'markdown-headers' ? [...template.markdownHeaderTokenIds!] : bans,
      };
    });
    return this.setup;
  }

  async init(ctx: StageContext, state: StateRestorer): Promise<void> {
    await this.instructionPrompts();
    await state.restore('progress', (key, value) => {
      if (key === this.stageName) this.plan.restore(value as SourceProgress);
    });
    if (this.plan.producedTotal > 0) ctx.logger.info({ produced: this.plan.producedTotal, target: this.plan.total ?? null }, 'continuing from committed progress');
  }

  private fill(ctx: StageContext): void {
    while (!ctx.signal.aborted && this.inflight < this.inFlight && this.failure === undefined) {
      const next = this.plan.take(this.config.samplesPerRequest);
      if (!next) return;
      this.inflight++;
      void this.request(next.setting, next.index, next.n, ctx).then(
        (ready) => this.ready.push(...ready),
        (err: unknown) => {
          // Not produced: those samples are requested again once the source is retried.
          this.plan.cancel(next.setting.key, next.n);
          if (!ctx.signal.aborted) this.failure = err;
        },
      ).finally(() => {
        this.inflight--;
        this.wake?.();
      });
    }
  }

  private async request(setting: DecodingSetting, index: number, n: number, ctx: StageContext): Promise<Ready[]> {
    if (this.config.requestsPerSecond) {
      const gap = 1000 / this.config.requestsPerSecond;
      const wait = this.lastStart + gap - Date.now();
      this.lastStart = Math.max(Date.now(), this.lastStart + gap);
      if (wait > 0) await sleep(wait, ctx.signal);
    }
    const setup = await this.instructionPrompts();
    // Backends seed sample i of a request with seed + i: requests step by samplesPerRequest so no seed repeats.
    const seed = setting.seed === undefined ? undefined : setting.seed + index * this.config.samplesPerRequest;
    const system = setup.prompts.length === 1 ? setup.prompts[0]! : drawSystemPrompt(setup.prompts, seed === undefined ? Math.random() : seededUniform(seed));
    const completions = await withRetry(
      () => this.backend.complete({
        prompt: system.prompt,
        n,
        temperature: setting.temperature,
        topP: setting.topP,
        maxTokens: setting.maxTokens,
        stop: setup.stop,
        stopTokenIds: setup.stopTokenIds,
        ...(setup.firstTokenBans.length ? { firstTokenBans: setup.firstTokenBans } : {}),
        signal: ctx.signal,
        ...(seed === undefined ? {} : { seed }),
      }),
      {
        // The backend retries each HTTP call itself; this covers a longer outage without failing the source.
        attempts: 3, initialDelayMs: 1_000, maxDelayMs: 30_000, signal: ctx.signal,
        onRetry: (err, attempt, delayMs) => ctx.logger.warn({ attempt, delayMs, err: errorMessage(err) }, 'instruction request failed; retrying'),
      },
    );
    // A server may answer with fewer samples than asked; the plan takes back the missing ones.
    if (completions.length < n) this.plan.cancel(setting.key, n - completions.length);
    const { template } = setup.resolved;
    return completions.slice(0, n).map((c) => {
      const verdict = cleanInstruction(c.text, c.finishReason, (t) => template.leak(t), this.config.cleanup);
      const record: Instruction = {
        uuid: randomUUID(),
        model: this.backend.model,
        gen_input_configs: {
          temperature: setting.temperature,
          top_p: setting.topP,
          max_tokens: setting.maxTokens,
          input_generator: this.backend.id,
          seed: c.seed ?? null,
          template_family: template.name,
          pre_query_template: system.prompt,
          system_prompt: system.text ?? null,
          stop: setup.stop,
          stop_token_ids: setup.stopTokenIds,
          system_prompt_key: system.key,
          decoding_key: setting.key,
        },
        instruction: verdict.text,
        finish_reason: c.finishReason,
        instruction_tokens: c.tokens,
        created_at: Date.now(),
      };
      const outcome: Outcome<Instruction> = verdict.rejected
        ? reject(verdict.rejected.rule, verdict.rejected.reason, record)
        : { kind: 'emit', records: [{ value: record, key: record.uuid }] };
      return { outcome, key: setting.key, clean: !verdict.rejected };
    });
  }

  async next(max: number, ctx: StageContext): Promise<Outcome<Instruction | SourceProgress>[]> {
    this.fill(ctx);
    while (this.ready.length === 0) {
      if (this.failure !== undefined) {
        const err = this.failure;
        this.failure = undefined;
        throw err;
      }
      if (this.inflight === 0 && (this.plan.finished || ctx.signal.aborted)) return [];
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    const out = this.ready.splice(0, max);
    for (const r of out) this.plan.settle(r.key, r.clean);
    this.fill(ctx);
    // Written in the batch's transaction: the committed count and the committed records never disagree.
    const progress: Outcome<SourceProgress> = { kind: 'emit', records: [{ port: 'progress', key: this.stageName, value: this.plan.snapshot(this.stageName) }] };
    return [...out.map((r) => r.outcome), progress];
  }
}

export const generateInstructions = defineSource({
  type: 'generate-instructions',
  description: 'Magpie instruction extraction: samples user queries from the pre-query template alone, under decoding and system-prompt mixtures, up to a count that holds across restarts; rejects empty, truncated and template-leaking ones.',
  config,
  outputSchema: 'magpie.Instruction',
  extraPorts: { progress: { schema: 'magpie.SourceProgress', compacted: true, defaultSuffix: '.progress' } },
  uses: (c) => ({ backends: [c.backend] }),
  create: (c, deps) => new InstructionGenerator(deps.backend(c.backend), c, deps.stageName),
});

