import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of a magpie process; one registry per process, labels per stage. */
export class StageMetrics {
  readonly registry = new Registry();
  readonly recordsIn: Counter<'stage'>;
  readonly recordsOut: Counter<'stage'>;
  readonly rejected: Counter<'stage'>;
  readonly deadLettered: Counter<'stage'>;
  readonly retries: Counter<'stage'>;
  readonly batchSeconds: Histogram<'stage'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.recordsIn = new Counter({ name: 'magpie_records_in_total', help: 'Records consumed by a stage', labelNames: ['stage'], registers });
    this.recordsOut = new Counter({ name: 'magpie_records_out_total', help: 'Records produced by a stage (all ports)', labelNames: ['stage'], registers });
    this.rejected = new Counter({ name: 'magpie_records_rejected_total', help: 'Records rejected by a rule', labelNames: ['stage'], registers });
    this.deadLettered = new Counter({ name: 'magpie_records_dead_lettered_total', help: 'Records sent to the dead-letter topic', labelNames: ['stage'], registers });
    this.retries = new Counter({ name: 'magpie_batch_retries_total', help: 'Batch attempts that failed and were retried', labelNames: ['stage'], registers });
    this.batchSeconds = new Histogram({ name: 'magpie_batch_seconds', help: 'Time to process and commit one batch', labelNames: ['stage'], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300], registers });
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  record(stage: string, counts: { in: number; out: number; rejected: number; deadLettered: number }): void {
    this.recordsIn.inc({ stage }, counts.in);
    this.recordsOut.inc({ stage }, counts.out);
    this.rejected.inc({ stage }, counts.rejected);
    this.deadLettered.inc({ stage }, counts.deadLettered);
  }
}
