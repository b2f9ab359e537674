/**
 * `npm run bench [-- --quick] [-- --only pipeline,serde]`: runs the benchmark suites, prints a table and writes
 * bench/results/latest.json and latest.md. Every figure is a ratio against a baseline measured in the same run.
 * A broker is started (scripts/kafka.sh, cluster 'bench') for the suites that need one, unless KAFKA_BROKERS is set.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/core/logger.js';
import { errorMessage } from '../src/core/errors.js';
import { startBroker, type Broker } from '../test/support/broker.js';
import type { BenchContext, Measurement, Suite } from './lib/harness.js';
import { machineInfo, markdownReport, writeResults, type BenchResults } from './lib/report.js';
import { pipelineSuite } from './suites/pipeline.js';
import { kafkaSuite } from './suites/kafka.js';
import { serdeSuite } from './suites/serde.js';
import { filterSuite } from './suites/filter.js';
import { embeddingSuite } from './suites/embedding.js';
import { neighborsSuite } from './suites/neighbors.js';
import { dedupeSuite } from './suites/dedupe.js';
import { dedupeStateSuite } from './suites/dedupe-state.js';
import { startupSuite } from './suites/startup.js';
import { parquetSuite } from './suites/parquet.js';
import { llamacppSuite } from './suites/llamacpp.js';
import { chainsSuite } from './suites/chains.js';

const SUITES: readonly Suite[] = [pipelineSuite, kafkaSuite, serdeSuite, filterSuite, embeddingSuite, neighborsSuite, dedupeSuite, dedupeStateSuite, startupSuite, parquetSuite, llamacppSuite, chainsSuite];

const { values } = parseArgs({
  options: {
    only: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    out: { type: 'string', default: fileURLToPath(new URL('./results/latest.json', import.meta.url)) },
  },
});

if (values.list) {
  for (const s of SUITES) process.stdout.write(`${s.name.padEnd(10)} ${s.description}\n`);
  process.exit(0);
}

const wanted = (values.only ?? []).flatMap((o) => o.split(',')).map((o) => o.trim()).filter(Boolean);
const unknown = wanted.filter((w) => !SUITES.some((s) => s.name === w));
if (unknown.length) {
  process.stderr.write(`unknown suite ${unknown.join(', ')}; have: ${SUITES.map((s) => s.name).join(', ')}\n`);
  process.exit(2);
}
const selected = wanted.length ? SUITES.filter((s) => wanted.includes(s.name)) : SUITES;

// kafkajs warns on every retried transaction step; the figures, not the retries, are the output here.
const logger = createLogger({ level: process.env.MAGPIE_LOG_LEVEL ?? 'error' });
let broker: Broker | undefined;
let brokerStarting: Promise<string[]> | undefined;
const progress = (message: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

const ctx: BenchContext = {
  quick: values.quick ?? false,
  logger,
  progress,
  brokers: () =>
    (brokerStarting ??= (async () => {
      const given = process.env.KAFKA_BROKERS?.trim();
      if (given) return given.split(',').map((b) => b.trim());
      progress('starting a Kafka broker (scripts/kafka.sh, cluster "bench")');
      broker = await startBroker({ name: 'bench', fresh: true });
      return broker.brokers;
    })()),
};

const stopBroker = async () => {
  if (!broker) return;
  const b = broker;
  broker = undefined;
  progress('stopping the Kafka broker');
  await b.clean().catch((err: unknown) => progress(`broker stop failed: ${errorMessage(err)}`));
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void stopBroker().finally(() => process.exit(130)));
}

const startedAt = new Date();
const machine = machineInfo();
const measurements: Measurement[] = [];
const failures: BenchResults['failures'] = [];
try {
  for (const suite of selected) {
    progress(`suite ${suite.name}: ${suite.description}`);
    const t = performance.now();
    try {
      const got = await suite.run(ctx);
      measurements.push(...got);
      progress(`suite ${suite.name} done in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    } catch (err) {
      progress(`suite ${suite.name} FAILED: ${errorMessage(err)}`);
      if (err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      failures.push({ suite: suite.name, error: errorMessage(err) });
    }
  }
} finally {
  await stopBroker();
}

const results: BenchResults = {
  startedAt: startedAt.toISOString(),
  durationSeconds: (Date.now() - startedAt.getTime()) / 1000,
  quick: ctx.quick,
  suites: selected.map((s) => s.name),
  machine,
  measurements,
  failures,
};
const jsonPath = values.out!;
const markdownPath = jsonPath.replace(/\.json$/, '') + '.md';
await writeResults(results, jsonPath, markdownPath);
process.stdout.write(`${markdownReport(results)}\nwrote ${jsonPath} and ${markdownPath}\n`);
process.exit(failures.length ? 1 : 0);
