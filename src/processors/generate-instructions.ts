import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { errorMessage } from '../core/errors.js';
import { sleep, withRetry } from '../core/retry.js';
import type { InferenceBackend } from '../inference/backend.js';
import { resolveTemplate, templateConfigSchema, type ResolvedTemplate } from '../inference/templates.js';
import type { Instruction } from '../serde/records.generated.js';
import { cleanInstruction, cleanupConfigSchema, DEFAULT_CLEANUP } from './instruction-cleanup.js';
import { defineSource, reject, type Outcome, type Source, type StageContext } from './stage.js';

const config = z.object({
  backend: z.string(),
  template: templateConfigSchema,
  sampling: z
    .object({
      temperature: z.number().min(0).max(5).default(1),
      topP: z.number().gt(0).max(1).default(1),
      maxTokens: z.number().int().min(1).default(512),
      /** Seed of the first request; request i uses seed + i, so a run can be repeated. */
      seed: z.number().int().optional(),
    })
    .strict()
    .default({ temperature: 1, topP: 1, maxTokens: 512 }),
  /** Instructions sampled per request (vLLM `n`): diversity comes from sampling alone. */
  samplesPerRequest: z.number().int().min(1).max(256).default(4),
  /** Requests kept in flight, so a continuous-batching server never runs dry. */
  inFlight: z.number().int().min(1).max(4096).default(8),
  /** Stop after this many instructions (clean or rejected) in this run; forever when absent. */
  count: z.number().int().min(1).optional(),
  /** Upper bound on requests started per second; unbounded when absent. */
  requestsPerSecond: z.number().positive().optional(),
  cleanup: cleanupConfigSchema.default(DEFAULT_CLEANUP),
});

type Config = z.infer<typeof config>;

/** The first template string (special token or assistant header) found in generated user text. */
export function templateLeak(resolved: ResolvedTemplate, text: string): string | undefined {
  return resolved.template.leaks(text)[0] ?? resolved.template.assistantLeaks(text)[0];
}

/**
 * Magpie step 1: send only the pre-query template as a raw completion prompt, so the aligned model writes a
 * user query by itself. Keeps `inFlight` requests running and hands out results as they complete.
 */
export class InstructionGenerator implements Source<Instruction> {
  private readonly resolved: ResolvedTemplate;
  private readonly prompt: string;
  private readonly ready: Outcome<Instruction>[] = [];
  private inflight = 0;
  private requested = 0;
  private requestIndex = 0;
  private lastStart = 0;
  private failure: unknown;
  private wake: (() => void) | undefined;

  constructor(
    private readonly backend: InferenceBackend,
    private readonly config: Config,
  ) {
    this.resolved = resolveTemplate(config.template);
    this.prompt = this.resolved.instructionPrompt;
  }

  private get exhausted(): boolean {
    return this.config.count !== undefined && this.requested >= this.config.count;
  }

  private fill(ctx: StageContext): void {
    while (!ctx.signal.aborted && !this.exhausted && this.inflight < this.config.inFlight && this.failure === undefined) {
      const n = Math.min(this.config.samplesPerRequest, (this.config.count ?? Infinity) - this.requested);
      this.requested += n;
      this.inflight++;
      const index = this.requestIndex++;
      void this.request(index, n, ctx).then(
        (outcomes) => this.ready.push(...outcomes),
        (err: unknown) => {
          // Not produced: those samples are requested again once the source is retried.
          this.requested -= n;
          if (!ctx.signal.aborted) this.failure = err;
        },
      ).finally(() => {
        this.inflight--;
        this.wake?.();
      });
    }
  }

  private async request(index: number, n: number, ctx: StageContext): Promise<Outcome<Instruction>[]> {
    if (this.config.requestsPerSecond) {
      const gap = 1000 / this.config.requestsPerSecond;
      const wait = this.lastStart + gap - Date.now();
      this.lastStart = Math.max(Date.now(), this.lastStart + gap);
      if (wait > 0) await sleep(wait, ctx.signal);
    }
    const { sampling } = this.config;
    const seed = sampling.seed === undefined ? undefined : sampling.seed + index;
    const completions = await withRetry(
      () => this.backend.complete({
        prompt: this.prompt,
        n,
        temperature: sampling.temperature,
        topP: sampling.topP,
        maxTokens: sampling.maxTokens,
        stop: [...this.resolved.template.stop],
        stopTokenIds: [...this.resolved.template.stopTokenIds],
        signal: ctx.signal,
        ...(seed === undefined ? {} : { seed }),
      }),
      {
        // The backend retries each HTTP call itself; this covers a longer outage without failing the source.
        attempts: 3, initialDelayMs: 1_000, maxDelayMs: 30_000, signal: ctx.signal,
        onRetry: (err, attempt, delayMs) => ctx.logger.warn({ attempt, delayMs, err: errorMessage(err) }, 'instruction request failed; retrying'),
      },
    );
    return completions.map((c, i) => {
      const verdict = cleanInstruction(c.text, c.finishReason, (t) => templateLeak(this.resolved, t), this.config.cleanup);
      const record: Instruction = {
        uuid: randomUUID(),
        model: this.backend.model,
        gen_input_configs: {
          temperature: sampling.temperature,
          top_p: sampling.topP,
          max_tokens: sampling.maxTokens,
          input_generator: this.backend.id,
          seed: seed === undefined ? null : seed * 1000 + i,
          template_family: this.resolved.template.name,
          pre_query_template: this.prompt,
          system_prompt: this.resolved.systemPrompt ?? null,
        },
        instruction: verdict.text,
        finish_reason: c.finishReason,
        instruction_tokens: c.tokens,
        created_at: Date.now(),
      };
      return verdict.rejected ? reject(verdict.rejected.rule, verdict.rejected.reason, record) : { kind: 'emit', records: [{ value: record, key: record.uuid }] };
    });
  }

  async next(max: number, ctx: StageContext): Promise<Outcome<Instruction>[]> {
    this.fill(ctx);
    while (this.ready.length === 0) {
      if (this.failure !== undefined) {
        const err = this.failure;
        this.failure = undefined;
        throw err;
      }
      if (this.inflight === 0 && (this.exhausted || ctx.signal.aborted)) return [];
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    const out = this.ready.splice(0, max);
    this.fill(ctx);
    return out;
  }
}

export const generateInstructions = defineSource({
  type: 'generate-instructions',
  description: 'Magpie instruction extraction: samples user queries from the pre-query template alone; rejects empty, truncated and template-leaking ones.',
  config,
  outputSchema: 'magpie.Instruction',
  uses: (c) => ({ backends: [c.backend] }),
  create: (c, deps) => new InstructionGenerator(deps.backend(c.backend), c),
});

