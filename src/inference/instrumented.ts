import { errorCode } from '../core/errors.js';
import type { StageMetrics } from '../core/metrics.js';
import type { ChatRequest, Completion, CompletionRequest, InferenceBackend } from './backend.js';

/**
 * The same backend, measured: requests in flight, request duration, prompt and completion tokens, errors by
 * code, health. One wrapper for every backend type, so each reports the same metrics.
 */
export function instrumentBackend(name: string, backend: InferenceBackend, metrics: StageMetrics): InferenceBackend {
  metrics.watchBackendHealth(name, () => backend.health?.() ?? 'ok');
  const measured = async (operation: 'complete' | 'chat', call: () => Promise<Completion[]>): Promise<Completion[]> => {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    metrics.backendCallStarted(name);
    try {
      const completions = await call();
      let promptTokens = 0;
      let completionTokens = 0;
      for (const c of completions) {
        promptTokens += c.promptTokens ?? 0;
        completionTokens += c.tokens;
      }
      metrics.backendCallEnded({ backend: name, operation, seconds: seconds(), promptTokens, completionTokens });
      return completions;
    } catch (err) {
      metrics.backendCallEnded({ backend: name, operation, seconds: seconds(), error: err instanceof Error && err.name === 'AbortError' ? 'ABORTED' : errorCode(err) });
      throw err;
    }
  };
  // Everything a backend offers besides the two measured calls passes through: its concurrency sizes the
  // stages' windows, its chat template serves `template: auto`.
  return {
    id: backend.id,
    model: backend.model,
    ...(backend.concurrency === undefined ? {} : { concurrency: backend.concurrency }),
    complete: (req: CompletionRequest) => measured('complete', () => backend.complete(req)),
    chat: (req: ChatRequest) => measured('chat', () => backend.chat(req)),
    close: () => backend.close(),
    ...(backend.health ? { health: () => backend.health!() } : {}),
    ...(backend.modelChatTemplate ? { modelChatTemplate: () => backend.modelChatTemplate!() } : {}),
  };
}
