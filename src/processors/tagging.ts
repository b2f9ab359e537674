import pLimit from 'p-limit';
import { z } from 'zod';
import { errorMessage, InferenceError, isRetryable } from '../core/errors.js';
import type { ChatRequest, InferenceBackend } from '../inference/backend.js';
import type { Conversation, TagFailure } from '../serde/records.generated.js';
import { emitValue, failed, type InputRecord, type Outcome, type StageContext } from './stage.js';

export type Judged<T> = { ok: true; value: T } | { ok: false; reason: string };

/** `tag_failures` with this tag's earlier entry replaced: by `reason` when it failed again, by nothing when it worked. */
function withTagResult(record: Conversation, tag: string, reason?: string): TagFailure[] {
  const others = record.tag_failures.filter((f) => f.tag !== tag);
  return reason === undefined ? others : [...others, { tag, reason }];
}

/** The record with the fields `apply` derives from a tag's value, or with the tag's failure noted. */
export function recordTag<T>(record: Conversation, tag: string, judged: Judged<T>, apply: (value: T) => Partial<Conversation>): Conversation {
  return judged.ok
    ? { ...record, ...apply(judged.value), tag_failures: withTagResult(record, tag) }
    : { ...record, tag_failures: withTagResult(record, tag, judged.reason) };
}

/**
 * LLM judges spend GPU time; a record the dedupe stage already marked as a near-duplicate is filtered out
 * anyway, so by default its tag stays null with this reason. A replay with `skipDuplicates: false` fills it.
 */
export const skipDuplicatesField = z.boolean().default(true);
export const DUPLICATE_SKIP_REASON = 'skipped: the record is a near-duplicate (is_duplicate); judge it with skipDuplicates: false';

/** The record with `tag` noted as skipped when it is a known duplicate and skipping is on; else undefined. */
export function skipIfDuplicate(record: Conversation, tag: string, skipDuplicates: boolean): Conversation | undefined {
  return skipDuplicates && record.is_duplicate === true ? recordTag(record, tag, { ok: false, reason: DUPLICATE_SKIP_REASON }, () => ({})) : undefined;
}

/**
 * Tags every record of a batch, `concurrency` at a time; each record flows on, tagged or with a tag failure.
 * A record whose call throws (server timeout, 5xx) becomes a `failed` outcome on its own: the runner retries
 * it alone, and the records already tagged keep their result.
 */
export async function tagEach(
  batch: InputRecord<Conversation>[],
  ctx: StageContext,
  concurrency: number,
  tag: (record: Conversation, signal: AbortSignal) => Promise<Conversation>,
): Promise<Outcome<Conversation>[]> {
  const run = pLimit(concurrency);
  return Promise.all(
    batch.map((r) =>
      run(async () => {
        ctx.signal.throwIfAborted();
        return emitValue(await tag(r.value, ctx.signal), r.key);
      }).catch((error: unknown) => failed<Conversation>(error)),
    ),
  );
}

/** Sampling of a judge call, as written in a topology. */
export const judgeSamplingSchema = z.strictObject({
  temperature: z.number().min(0).max(2).default(0),
  topP: z.number().gt(0).max(1).default(1),
  maxTokens: z.number().int().min(1).max(8192).default(512),
  /** Output that does not parse is asked for again this many times, each a fresh sample. */
  retries: z.number().int().min(0).max(10).default(2),
  /** Temperature of those fresh samples: at 0 a resample would repeat the same output. */
  retryTemperature: z.number().min(0).max(2).default(0.7),
});
export type JudgeSampling = z.infer<typeof judgeSamplingSchema>;
export const DEFAULT_JUDGE_SAMPLING: JudgeSampling = { temperature: 0, topP: 1, maxTokens: 512, retries: 2, retryTemperature: 0.7 };

/**
 * Asks `backend` and parses the answer; an answer that does not parse (or was cut at maxTokens) is asked
 * for again, up to `sampling.retries` times. A backend error the runner can retry (timeout, 5xx) is thrown;
 * any other backend error, like output that never parses, comes back as a reason for `tag_failures`.
 */
export async function askJudge<T>(
  backend: InferenceBackend,
  request: Pick<ChatRequest, 'messages' | 'jsonSchema' | 'stop'>,
  sampling: JudgeSampling,
  parse: (text: string) => T,
  signal: AbortSignal,
): Promise<Judged<T>> {
  let reason = '';
  for (let attempt = 0; attempt <= sampling.retries; attempt++) {
    let text: string;
    let finishReason: string;
    try {
      const [completion] = await backend.chat({
        ...request,
        temperature: attempt === 0 ? sampling.temperature : sampling.retryTemperature,
        topP: sampling.topP,
        maxTokens: sampling.maxTokens,
        signal,
      });
      if (!completion) throw new InferenceError('INFERENCE_BAD_RESPONSE', `${backend.id} returned no completion`);
      ({ text, finishReason } = completion);
    } catch (err) {
      if (isRetryable(err) || signal.aborted || !(err instanceof InferenceError)) throw err;
      return { ok: false, reason: `${err.code}: ${errorMessage(err)}` };
    }
    try {
      return { ok: true, value: parse(text) };
    } catch (err) {
      const cut = finishReason === 'length' ? ` (cut at maxTokens ${sampling.maxTokens})` : '';
      reason = `unparseable output after ${attempt + 1} attempt${attempt === 0 ? '' : 's'}${cut}: ${errorMessage(err)}; last output: ${JSON.stringify(text.slice(0, 200))}`;
    }
  }
  return { ok: false, reason };
}
