import { describe, expect, it } from 'vitest';
import { StageMetrics } from '../../../src/core/metrics.js';
import type { Completion, InferenceBackend } from '../../../src/inference/backend.js';
import { instrumentBackend } from '../../../src/inference/instrumented.js';

const backend: InferenceBackend = {
  id: 'fake:m',
  model: 'm',
  concurrency: 256,
  complete: async (): Promise<Completion[]> => [{ text: 'x', finishReason: 'stop', tokens: 3, promptTokens: 5 }],
  chat: async (): Promise<Completion[]> => [],
  close: async () => undefined,
  modelChatTemplate: async () => ({ template: '{{ messages }}', source: 'test', name: 'm' }) as never,
};

describe('instrumentBackend', () => {
  it('measures calls and passes through what sizes the windows and serves template: auto', async () => {
    const metrics = new StageMetrics();
    const measured = instrumentBackend('b', backend, metrics);
    expect(measured.concurrency).toBe(256);
    expect(await measured.modelChatTemplate!()).toMatchObject({ source: 'test' });
    await measured.complete({ prompt: 'p', temperature: 0, topP: 1, maxTokens: 8 });
    expect(await metrics.registry.getSingleMetricAsString('magpie_backend_tokens_total')).toMatch(/type="completion"\} 3/);
  });
});
