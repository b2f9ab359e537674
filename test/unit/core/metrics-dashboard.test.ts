import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../../src/core/circuit-breaker.js';
import { StageMetrics } from '../../../src/core/metrics.js';
import { instrumentBackend } from '../../../src/inference/instrumented.js';
import { InferenceError } from '../../../src/core/errors.js';
import type { InferenceBackend } from '../../../src/inference/backend.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');

interface Panel {
  title?: string;
  type: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'docker/grafana/magpie.json'), 'utf8')) as {
  panels: Panel[];
  templating: { list: { definition?: string }[] };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
const queries = [...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)), ...dashboard.templating.list.flatMap((v) => (v.definition ? [v.definition] : []))];

const PROMQL_WORDS = new Set(['sum', 'max', 'min', 'avg', 'count', 'rate', 'irate', 'increase', 'histogram_quantile', 'label_values', 'and', 'or', 'unless', 'bool']);

/** Metric names a PromQL expression reads: what is left once labels, ranges, groupings, functions and numbers are gone. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"[^"]*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|on|without|ignoring)\s*\([^)]*\)/g, '')
    .replace(/label_values\(([^,]+),[^)]*\)/g, '$1');
  return (bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []).filter((w) => !PROMQL_WORDS.has(w));
}

/** A process' registry after every kind of event has happened once: each series it can export is in the text. */
async function exportedNames(): Promise<{ names: Set<string>; magpie: string[] }> {
  const metrics = new StageMetrics({ defaultMetrics: true });
  metrics.record('instructions', { in: 0, out: 2, rejected: 1, deadLettered: 0 });
  metrics.record('dedupe', { in: 2, out: 4, rejected: 0, deadLettered: 1, ports: { out: 2, changelog: 2 } });
  metrics.retries.inc({ stage: 'dedupe' });
  metrics.batchSeconds.observe({ stage: 'dedupe' }, 0.2);
  metrics.observeRecordLatency('dedupe', [Date.now() - 1000]);
  metrics.setConsumerLag('dedupe', 'magpie.embedded', 0, 5);
  metrics.setSourceTarget('instructions', 100);
  metrics.watchCircuit('responses', new CircuitBreaker({ failureThreshold: 1, coolDownMs: 1000, maxCoolDownMs: 1000 }));
  let fail = false;
  const fake: InferenceBackend = {
    id: 'fake:model',
    model: 'model',
    complete: async () => {
      if (fail) throw new InferenceError('INFERENCE_TIMEOUT', 'slow');
      return [{ text: 'hi', finishReason: 'stop', tokens: 3, promptTokens: 7 }];
    },
    chat: async () => [],
    close: async () => undefined,
    health: () => 'ok',
  };
  const backend = instrumentBackend('llm', fake, metrics);
  await backend.complete({ prompt: 'p', temperature: 1, topP: 1, maxTokens: 8 });
  fail = true;
  await backend.complete({ prompt: 'p', temperature: 1, topP: 1, maxTokens: 8 }).catch(() => undefined);
  const text = await metrics.registry.metrics();
  const names = new Set(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]));
  const magpie = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('magpie_'));
  return { names, magpie };
}

describe('Grafana dashboard (docker/grafana/magpie.json)', () => {
  it('queries only metrics the process exports', async () => {
    const { names } = await exportedNames();
    expect(queries.length).toBeGreaterThan(10);
    for (const expr of queries) {
      const used = metricNames(expr);
      expect(used.length, `no metric in: ${expr}`).toBeGreaterThan(0);
      for (const name of used) expect(names, `${name} (in ${expr}) is not exported`).toContain(name);
    }
  });

  it('shows every magpie metric in some panel', async () => {
    const { magpie } = await exportedNames();
    const used = new Set(queries.flatMap(metricNames).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    for (const name of magpie) expect(used, `${name} is on no panel`).toContain(name);
  });

  it('every magpie metric is documented in the README', async () => {
    const { magpie } = await exportedNames();
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    for (const name of magpie) expect(readme, `${name} is not in README.md`).toContain(`\`${name}\``);
  });
});

describe('metrics', () => {
  it('count outputs per port, so a changelog write is not flow', () => {
    const metrics = new StageMetrics();
    metrics.record('dedupe', { in: 10, out: 18, rejected: 0, deadLettered: 1, ports: { out: 9, changelog: 9 } });
    metrics.record('dedupe', { in: 1, out: 1, rejected: 0, deadLettered: 0 });
    expect(metrics.stageTotals('dedupe')).toEqual({ in: 11, out: 10, rejected: 0, deadLettered: 1, ports: { out: 10, changelog: 9 } });
  });

  it('measure a backend: in flight while a call runs, tokens and errors by code after', async () => {
    const metrics = new StageMetrics();
    let release!: () => void;
    const fake: InferenceBackend = {
      id: 'fake:m',
      model: 'm',
      complete: () => new Promise((resolve) => (release = () => resolve([{ text: 'a', finishReason: 'stop', tokens: 4, promptTokens: 10 }, { text: 'b', finishReason: 'length', tokens: 6, promptTokens: 0 }]))),
      chat: () => Promise.reject(new InferenceError('INFERENCE_HTTP', '400')),
      close: async () => undefined,
    };
    const backend = instrumentBackend('llm', fake, metrics);
    const call = backend.complete({ prompt: 'p', temperature: 1, topP: 1, maxTokens: 8, n: 2 });
    expect((await metrics.backendInFlight.get()).values[0]?.value).toBe(1);
    release();
    await call;
    await expect(backend.chat({ messages: [], temperature: 1, topP: 1, maxTokens: 8 })).rejects.toThrow('400');
    expect((await metrics.backendInFlight.get()).values[0]?.value).toBe(0);
    const tokens = Object.fromEntries((await metrics.backendTokens.get()).values.map((v) => [v.labels.type, v.value]));
    expect(tokens).toEqual({ prompt: 10, completion: 10 });
    expect((await metrics.backendErrors.get()).values).toEqual([{ labels: { backend: 'llm', code: 'INFERENCE_HTTP' }, value: 1 }]);
    const durations = (await metrics.backendRequestSeconds.get()).values.filter((v) => v.metricName === 'magpie_backend_request_duration_seconds_count');
    expect(Object.fromEntries(durations.map((v) => [`${v.labels.operation}/${v.labels.outcome}`, v.value]))).toEqual({ 'complete/ok': 1, 'chat/error': 1 });
  });

  it('follow a circuit breaker through its states', async () => {
    const metrics = new StageMetrics();
    const breaker = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 60_000, maxCoolDownMs: 60_000 });
    metrics.watchCircuit('responses', breaker);
    const state = async () => (await metrics.circuitState.get()).values.find((v) => v.value === 1)?.labels.state;
    expect(await state()).toBe('closed');
    await breaker.acquire();
    breaker.failure();
    expect(await state()).toBe('open');
    breaker.dispose();
  });
});
