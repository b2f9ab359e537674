import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CircuitBreaker, CircuitState } from './circuit-breaker.js';

/** What one batch (or one source step) of a stage did. `ports`: records written per output port. */
export interface BatchCounts {
  in: number;
  out: number;
  rejected: number;
  deadLettered: number;
  /** Outputs per port (`out`, `changelog`, …); without it every output counts on port `out`. */
  ports?: Readonly<Record<string, number>>;
}

/** Totals of one stage so far; `out` is its main port only, `ports` has every port. */
export interface StageTotals {
  in: number;
  out: number;
  rejected: number;
  deadLettered: number;
  ports: Record<string, number>;
}

/** What a backend reports to its metrics; see src/inference/instrumented.ts. */
export interface BackendCall {
  backend: string;
  operation: 'complete' | 'chat';
  seconds: number;
  /** Error code (InferenceError.code) when the call failed. */
  error?: string;
  promptTokens?: number;
  completionTokens?: number;
}

const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half-open'];
const BACKEND_HEALTH = ['ok', 'degraded', 'down', 'closed'] as const;
type BackendHealthState = (typeof BACKEND_HEALTH)[number];

/**
 * Prometheus metrics of a magpie process: one registry per process, labels per stage, port, backend.
 * Names follow Prometheus conventions (base units, `_total` counters); README "Metrics" documents each one.
 * Every metric is created here, so the registry lists them all before a record flows (the dashboard test
 * relies on that).
 */
export class StageMetrics {
  readonly registry = new Registry();
  readonly recordsIn: Counter<'stage'>;
  readonly recordsOut: Counter<'stage' | 'port'>;
  readonly rejected: Counter<'stage'>;
  readonly deadLettered: Counter<'stage'>;
  readonly retries: Counter<'stage'>;
  readonly batchSeconds: Histogram<'stage'>;
  readonly recordLatency: Histogram<'stage'>;
  readonly consumerLag: Gauge<'stage' | 'topic' | 'partition'>;
  readonly circuitState: Gauge<'stage' | 'state'>;
  readonly sourceTarget: Gauge<'stage'>;
  readonly backendInFlight: Gauge<'backend'>;
  readonly backendRequestSeconds: Histogram<'backend' | 'operation' | 'outcome'>;
  readonly backendTokens: Counter<'backend' | 'type'>;
  readonly backendErrors: Counter<'backend' | 'code'>;
  readonly backendHealth: Gauge<'backend' | 'state'>;
  private readonly healthOf = new Map<string, () => BackendHealthState | undefined>();
  /** Totals per stage, kept beside the counters so the progress line reads them without a registry scrape. */
  private readonly totals = new Map<string, StageTotals>();
  private readonly targets = new Map<string, number>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.recordsIn = new Counter({ name: 'magpie_records_in_total', help: 'Records consumed by a stage', labelNames: ['stage'], registers });
    this.recordsOut = new Counter({ name: 'magpie_records_out_total', help: 'Records written by a stage, per output port (out, changelog, …)', labelNames: ['stage', 'port'], registers });
    this.rejected = new Counter({ name: 'magpie_records_rejected_total', help: 'Records rejected by a rule (written to the rejects topic)', labelNames: ['stage'], registers });
    this.deadLettered = new Counter({ name: 'magpie_records_dead_lettered_total', help: 'Records sent to the dead-letter topic', labelNames: ['stage'], registers });
    this.retries = new Counter({ name: 'magpie_batch_retries_total', help: 'Batch attempts that failed and were retried', labelNames: ['stage'], registers });
    this.batchSeconds = new Histogram({ name: 'magpie_batch_seconds', help: 'Time to process and commit one batch', labelNames: ['stage'], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300], registers });
    this.recordLatency = new Histogram({
      name: 'magpie_record_latency_seconds',
      help: 'Time from a record being written to its input topic to its results being committed by the stage (queueing + processing)',
      labelNames: ['stage'],
      buckets: [0.05, 0.25, 1, 2.5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
    this.consumerLag = new Gauge({ name: 'magpie_consumer_lag_records', help: 'Records in the input partition not yet committed by the stage\'s consumer group', labelNames: ['stage', 'topic', 'partition'], registers });
    this.circuitState = new Gauge({ name: 'magpie_circuit_state', help: 'Circuit breaker of a stage: 1 for its current state (closed, open, half-open), 0 for the others', labelNames: ['stage', 'state'], registers });
    this.sourceTarget = new Gauge({ name: 'magpie_source_target_records', help: 'Records a source stage is set to produce (its count); absent when unbounded', labelNames: ['stage'], registers });
    this.backendInFlight = new Gauge({ name: 'magpie_backend_requests_in_flight', help: 'Inference requests sent to a backend and not yet answered', labelNames: ['backend'], registers });
    this.backendRequestSeconds = new Histogram({
      name: 'magpie_backend_request_duration_seconds',
      help: 'Inference request duration, retries included, by operation and outcome (ok, error)',
      labelNames: ['backend', 'operation', 'outcome'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.backendTokens = new Counter({ name: 'magpie_backend_tokens_total', help: 'Tokens processed by a backend: type="prompt" read, type="completion" generated', labelNames: ['backend', 'type'], registers });
    this.backendErrors = new Counter({ name: 'magpie_backend_errors_total', help: 'Failed inference requests by error code (INFERENCE_TIMEOUT, INFERENCE_HTTP, …)', labelNames: ['backend', 'code'], registers });
    const healthOf = this.healthOf;
    this.backendHealth = new Gauge({
      name: 'magpie_backend_health',
      help: 'Backend health: 1 for its current state (ok, degraded: some endpoints failing, down: all failing, closed), 0 for the others',
      labelNames: ['backend', 'state'],
      registers,
      collect() {
        for (const [backend, read] of healthOf) {
          const now = read();
          for (const state of BACKEND_HEALTH) this.set({ backend, state }, now === state ? 1 : 0);
        }
      },
    });
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Called by the runners once per committed batch (or source step). */
  record(stage: string, counts: BatchCounts): void {
    const totals = this.totalsOf(stage);
    this.recordsIn.inc({ stage }, counts.in);
    this.rejected.inc({ stage }, counts.rejected);
    this.deadLettered.inc({ stage }, counts.deadLettered);
    totals.in += counts.in;
    totals.rejected += counts.rejected;
    totals.deadLettered += counts.deadLettered;
    for (const [port, n] of Object.entries(counts.ports ?? { out: counts.out })) {
      this.recordsOut.inc({ stage, port }, n);
      totals.ports[port] = (totals.ports[port] ?? 0) + n;
    }
    totals.out = totals.ports.out ?? 0;
  }

  /** Called by the stage runner after a commit with the Kafka timestamps (ms) of the batch's input records. */
  observeRecordLatency(stage: string, inputTimestampsMs: Iterable<number>, nowMs = Date.now()): void {
    for (const t of inputTimestampsMs) if (Number.isFinite(t)) this.recordLatency.observe({ stage }, Math.max(0, nowMs - t) / 1000);
  }

  setConsumerLag(stage: string, topic: string, partition: number, lag: number): void {
    this.consumerLag.set({ stage, topic, partition: String(partition) }, lag);
  }

  setSourceTarget(stage: string, count: number): void {
    this.sourceTarget.set({ stage }, count);
    this.targets.set(stage, count);
  }

  /** The count a source stage is set to produce, if any. */
  stageTarget(stage: string): number | undefined {
    return this.targets.get(stage);
  }

  /** Follows a stage's circuit breaker; call once after creating it. */
  watchCircuit(stage: string, breaker: Pick<CircuitBreaker, 'state' | 'on'>): void {
    const show = (current: CircuitState) => {
      for (const state of CIRCUIT_STATES) this.circuitState.set({ stage, state }, state === current ? 1 : 0);
    };
    show(breaker.state);
    breaker.on('state', (change: { state: CircuitState }) => show(change.state));
  }

  /** Reports a backend's health at every scrape. */
  watchBackendHealth(backend: string, health: () => BackendHealthState | undefined): void {
    this.healthOf.set(backend, health);
  }

  backendCallStarted(backend: string): void {
    this.backendInFlight.inc({ backend });
  }

  backendCallEnded(call: BackendCall): void {
    const { backend } = call;
    this.backendInFlight.dec({ backend });
    this.backendRequestSeconds.observe({ backend, operation: call.operation, outcome: call.error ? 'error' : 'ok' }, call.seconds);
    if (call.error) this.backendErrors.inc({ backend, code: call.error });
    if (call.promptTokens) this.backendTokens.inc({ backend, type: 'prompt' }, call.promptTokens);
    if (call.completionTokens) this.backendTokens.inc({ backend, type: 'completion' }, call.completionTokens);
  }

  /** A stage's totals so far (zeros before its first batch). */
  stageTotals(stage: string): StageTotals {
    const t = this.totalsOf(stage);
    return { ...t, ports: { ...t.ports } };
  }

  private totalsOf(stage: string): StageTotals {
    let t = this.totals.get(stage);
    if (!t) this.totals.set(stage, (t = { in: 0, out: 0, rejected: 0, deadLettered: 0, ports: {} }));
    return t;
  }
}
