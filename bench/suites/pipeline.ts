import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { createKafka } from '../../src/kafka/client.js';
import { consumerLag } from '../../src/kafka/consumer-lag.js';
import { readTopic } from '../../src/kafka/read-topic.js';
import type { Conversation, Instruction, Rejected } from '../../src/serde/records.generated.js';
import { createSerde } from '../../src/serde/serde.js';
import type { SchemaName } from '../../src/serde/schemas.js';
import { createTopologyTopics, runTopology } from '../../src/topology/build.js';
import { loadTopologyFile } from '../../src/topology/load.js';
import { measurement, sleepMs, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';
import { meanLength, type LengthDistribution, type SimServerOptions, type SimStats } from '../sim-server.js';

const TOPOLOGY = fileURLToPath(new URL('../topologies/pipeline.yaml', import.meta.url));
const SIM_SERVER = fileURLToPath(new URL('../sim-server.ts', import.meta.url));

/** Output lengths of Magpie-style data: short user queries, answers of a few hundred tokens with a long tail. */
const INSTRUCTION_LENGTHS: LengthDistribution = { kind: 'lognormal', median: 30, sigma: 0.5 };
const RESPONSE_LENGTHS: LengthDistribution = { kind: 'lognormal', median: 350, sigma: 0.6 };
/** max_tokens of bench/topologies/pipeline.yaml. */
const INSTRUCTION_MAX_TOKENS = 256;
const RESPONSE_MAX_TOKENS = 2048;
/** Wall-clock mean answer latency at a full batch that timeScale is chosen for: a steady state within ~10 s. */
const TARGET_LATENCY_S = 4;

/**
 * Server ceilings from MODELS.md (LambdaLabs' vLLM figures): Llama-3.1-8B on one H100 3,000-8,000 output tok/s,
 * 70B on 4×H100 1,500-3,500. Single-stream decode speeds are typical of vLLM at batch 1 on that hardware;
 * 256 is vLLM's default max_num_seqs.
 */
interface ServerProfile {
  name: string;
  ceiling: number;
  singleStream: number;
  maxBatch: number;
}
const PROFILES: readonly ServerProfile[] = [
  { name: 'Llama-3-8B 1×H100 @3,000', ceiling: 3_000, singleStream: 120, maxBatch: 256 },
  { name: 'Llama-3-8B 1×H100 @8,000', ceiling: 8_000, singleStream: 120, maxBatch: 256 },
  { name: 'Llama-3-70B 4×H100 @1,500', ceiling: 1_500, singleStream: 40, maxBatch: 256 },
  { name: 'Llama-3-70B 4×H100 @3,500', ceiling: 3_500, singleStream: 40, maxBatch: 256 },
  // An H200-class server: 8B at 20,000 output tok/s with a 512-sequence batch (vLLM --max-num-seqs 512).
  { name: 'Llama-3.1-8B 1×H200 @20,000', ceiling: 20_000, singleStream: 150, maxBatch: 512 },
];

/** Environment of bench/topologies/pipeline.yaml. */
type Settings = Partial<Record<'PARTITIONS', number>>;

interface Variant {
  name: string;
  settings: Settings;
  /** Response-stage consumers in the group, as separate `magpie run --stages responses` processes would be. */
  responseInstances: number;
}

/**
 * The topology as a user writes it, no tuning field set (the server's batch told, as `serverBatch`): one process,
 * and sixteen response processes in one group (with 32 partitions so each has two).
 */
const VARIANTS: readonly Variant[] = [
  { name: 'defaults, 1 process', settings: {}, responseInstances: 1 },
  { name: 'defaults, 16 processes', settings: { PARTITIONS: 32 }, responseInstances: 16 },
];
/** --quick: one process. */
const QUICK_VARIANTS = ['defaults, 1 process'];

interface SimProcess {
  url: string;
  stats(): Promise<SimStats>;
  close(): Promise<void>;
}

async function startSim(options: Partial<SimServerOptions>): Promise<SimProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', SIM_SERVER, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (l) => {
      rl.close();
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`sim server exited with ${String(code)} before listening`)));
  });
  const { port } = JSON.parse(line) as { port: number };
  const url = `http://127.0.0.1:${port}`;
  const pool = new Pool(url, { connections: 2 });
  return {
    url,
    stats: async () => (await (await pool.request({ method: 'GET', path: '/stats' })).body.json()) as SimStats,
    close: async () => {
      await pool.close();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function delta(a: SimStats, b: SimStats) {
  const sim = b.simSeconds - a.simSeconds;
  return {
    simSeconds: sim,
    decodedPerSecond: (b.tokensDecoded - a.tokensDecoded) / sim,
    occupancy: (b.sequenceSeconds - a.sequenceSeconds) / sim,
    fullFraction: (b.fullSeconds - a.fullSeconds) / sim,
    idleFraction: (b.idleSeconds - a.idleSeconds) / sim,
  };
}

const PRE_QUERY = '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n';
const ANSWER_PROMPT = `${PRE_QUERY}How do I sort a list?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`;

/**
 * The ceiling: a client that keeps twice the batch in requests outstanding, in the pipeline's mix (for every
 * pre-query request of n samples, n answer requests), so the server is never short of work.
 */
async function measureCeiling(sim: SimProcess, profile: ServerProfile, warmupS: number, windowS: number, samples: number): Promise<ReturnType<typeof delta>> {
  const outstanding = profile.maxBatch * 2;
  const pool = new Pool(sim.url, { connections: outstanding, headersTimeout: 0, bodyTimeout: 0 });
  const abort = new AbortController();
  // Every request listens on it: hundreds at once are expected.
  setMaxListeners(0, abort.signal);
  let seq = 0;
  const loop = async () => {
    while (!abort.signal.aborted) {
      const pre = seq++ % (samples + 1) === 0;
      const body = JSON.stringify({ model: 'sim', prompt: pre ? PRE_QUERY : ANSWER_PROMPT, n: pre ? samples : 1, max_tokens: pre ? INSTRUCTION_MAX_TOKENS : RESPONSE_MAX_TOKENS });
      try {
        const res = await pool.request({ method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body, signal: abort.signal });
        await res.body.dump();
      } catch {
        return;
      }
    }
  };
  const loops = Array.from({ length: outstanding }, () => loop());
  await sleepMs(warmupS * 1000);
  const s0 = await sim.stats();
  await sleepMs(windowS * 1000);
  const s1 = await sim.stats();
  abort.abort();
  await Promise.allSettled(loops);
  await pool.destroy();
  return delta(s0, s1);
}

interface PipelineRun {
  server: ReturnType<typeof delta>;
  /** Tokens of records committed to Kafka in the window (Kafka timestamps), per simulated second. */
  committedPerSecond: number;
  instructionShare: number;
  backlogGrowth: number;
  recordsCommitted: number;
}

async function committedTokens(ctx: BenchContext, brokers: string[], prefix: string, from: number, to: number) {
  const kafka = createKafka({ brokers, clientId: 'bench-reader', ssl: false, connectionTimeoutMs: 10_000, requestTimeoutMs: 30_000 }, ctx.logger);
  const serde = createSerde();
  const inWindow = (ts: string) => Number(ts) >= from && Number(ts) < to;
  const sum = async <T>(topic: string, schema: SchemaName, tokens: (v: T) => number) => {
    let total = 0;
    let records = 0;
    await readTopic(kafka, topic, async (raw) => {
      if (!inWindow(raw.timestamp)) return;
      total += tokens(await serde.decode<T>(schema, raw.value, raw.headers));
      records++;
    });
    return { total, records };
  };
  const instructions = await sum<Instruction>(`${prefix}instructions`, 'magpie.Instruction', (v) => v.instruction_tokens);
  const answers = await sum<Conversation>(`${prefix}conversations`, 'magpie.Conversation', (v) => v.response_tokens);
  // Pre-queries cut off at max_tokens are rejected, but their tokens were generated and handled all the same.
  const rejected = await sum<Rejected>(`${prefix}magpie.rejects`, 'magpie.Rejected', (v) => (v.stage === 'instructions' ? ((JSON.parse(v.record_json) as Instruction).instruction_tokens ?? 0) : 0));
  await serde.close();
  return { instructionTokens: instructions.total + rejected.total, answerTokens: answers.total, records: instructions.records + answers.records + rejected.records };
}

async function backlog(brokers: string[], ctx: BenchContext, prefix: string, groupId: string): Promise<number> {
  const kafka = createKafka({ brokers, clientId: 'bench-lag', ssl: false, connectionTimeoutMs: 10_000, requestTimeoutMs: 30_000 }, ctx.logger);
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Transaction markers take an offset each: an estimate, good for telling a growing backlog from a flat one.
    return [...(await consumerLag(admin, groupId, `${prefix}instructions`)).values()].reduce((a, b) => a + b, 0);
  } finally {
    await admin.disconnect();
  }
}

async function runPipeline(ctx: BenchContext, sim: SimProcess, profile: ServerProfile, variant: Variant, timeScale: number, warmupS: number, windowS: number): Promise<PipelineRun> {
  const brokers = await ctx.brokers();
  const prefix = `bench-pipe-${randomBytes(3).toString('hex')}-`;
  const env: NodeJS.ProcessEnv = { ...process.env, SIM_URL: `${sim.url}/v1`, SERVER_BATCH: String(profile.maxBatch) };
  for (const [k, v] of Object.entries(variant.settings)) env[k] = String(v);
  const topology = await loadTopologyFile(TOPOLOGY, { topicPrefix: prefix, brokers, env });
  await createTopologyTopics(createKafka(topology.kafka, ctx.logger), topology, ctx.logger);
  // Response consumers first and together (one group rebalance), then the source: the warm-up starts from an empty topic.
  const running = await Promise.all(Array.from({ length: variant.responseInstances }, () => runTopology(topology, ctx.logger, { stages: ['responses'], createTopics: false })));
  running.push(await runTopology(topology, ctx.logger, { stages: ['instructions'], createTopics: false }));
  const groupId = topology.stages.find((s) => s.name === 'responses')!.groupId;
  const stopAll = () => Promise.all(running.map((r) => r.stop(0)));
  // BENCH_TRACE=1 prints the server's batch every second: the shape of the idling tells its cause.
  const trace = process.env.BENCH_TRACE ? setInterval(() => void sim.stats().then((s) => ctx.progress(`  active ${s.activeSequences} queued ${s.queuedRequests}`)), 1_000) : undefined;
  try {
    await sleepMs(warmupS * 1000);
    const lag0 = await backlog(brokers, ctx, prefix, groupId);
    const s0 = await sim.stats();
    const t0 = Date.now();
    await sleepMs(windowS * 1000);
    const t1 = Date.now();
    const s1 = await sim.stats();
    const lag1 = await backlog(brokers, ctx, prefix, groupId);
    clearInterval(trace);
    await stopAll();
    const c = await committedTokens(ctx, brokers, prefix, t0, t1);
    const total = c.instructionTokens + c.answerTokens;
    return {
      server: delta(s0, s1),
      committedPerSecond: total / (((t1 - t0) / 1000) * timeScale),
      instructionShare: total ? c.instructionTokens / total : 0,
      backlogGrowth: lag1 - lag0,
      recordsCommitted: c.records,
    };
  } finally {
    clearInterval(trace);
    await stopAll();
  }
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

export const pipelineSuite: Suite = {
  name: 'pipeline',
  description: 'instruction + response stages through a real broker against a simulated continuous-batching server: tokens/s ÷ the server ceiling',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    await ctx.brokers();
    // BENCH_PIPELINE_PROFILES='8,000|1,500' and BENCH_PIPELINE_VARIANTS='defaults|4 consumers' (substrings) narrow a run.
    const wantedProfiles = process.env.BENCH_PIPELINE_PROFILES?.split('|');
    const profiles = (ctx.quick ? [PROFILES[1]!] : PROFILES).filter((p) => !wantedProfiles || wantedProfiles.some((w) => p.name.includes(w)));
    // The warm-up lasts until the source has filled its readers' backlog bound and waits at it: before that it
    // runs ahead of the answers, and the server's tokens would flatter the pipeline.
    const warmupS = Number(process.env.BENCH_WARMUP ?? (ctx.quick ? 20 : 30));
    const windowS = Number(process.env.BENCH_WINDOW ?? (ctx.quick ? 15 : 30));
    const ceilingWarmupS = 6;
    const ceilingWindowS = ctx.quick ? 6 : 8;
    const answerMean = meanLength(RESPONSE_LENGTHS, RESPONSE_MAX_TOKENS);
    const out: Measurement[] = [];
    for (const profile of profiles) {
      const timeScale = round((answerMean * profile.maxBatch) / profile.ceiling / TARGET_LATENCY_S, 2);
      const sim = await startSim({
        ceilingTokensPerSecond: profile.ceiling,
        singleStreamTokensPerSecond: profile.singleStream,
        maxBatch: profile.maxBatch,
        timeScale,
        instructionLengths: INSTRUCTION_LENGTHS,
        responseLengths: RESPONSE_LENGTHS,
      });
      try {
        const ceiling = await measureCeiling(sim, profile, ceilingWarmupS, ceilingWindowS, 4);
        ctx.progress(`pipeline ${profile.name}: ceiling ${ceiling.decodedPerSecond.toFixed(0)} tok/s (batch ${ceiling.occupancy.toFixed(0)}/${profile.maxBatch}), timeScale ${timeScale}`);
        const only = process.env.BENCH_PIPELINE_VARIANTS?.split('|') ?? (ctx.quick ? QUICK_VARIANTS : undefined);
        for (const variant of VARIANTS.filter((v) => !only || only.some((o) => v.name.includes(o)))) {
          const run = await runPipeline(ctx, sim, profile, variant, timeScale, warmupS, windowS);
          const efficiency = run.server.decodedPerSecond / ceiling.decodedPerSecond;
          ctx.progress(
            `pipeline ${profile.name} ${variant.name}: ${run.server.decodedPerSecond.toFixed(0)} tok/s = ${efficiency.toFixed(3)} of ceiling (committed ${run.committedPerSecond.toFixed(0)} tok/s); ` +
              `batch ${run.server.occupancy.toFixed(0)}/${profile.maxBatch}, full ${(run.server.fullFraction * 100).toFixed(0)}% of the time; backlog ${run.backlogGrowth >= 0 ? '+' : ''}${run.backlogGrowth}`,
          );
          out.push(
            measurement('pipeline', `${profile.name}, ${variant.name}`, run.server.decodedPerSecond, 'tok/s', { name: 'server ceiling (saturating client)', value: ceiling.decodedPerSecond }, {
              settings: { PARTITIONS: 3, SERVER_BATCH: profile.maxBatch, ...variant.settings },
              responseInstances: variant.responseInstances,
              timeScale,
              windowSeconds: windowS,
              meanBatchOccupancy: round(run.server.occupancy / profile.maxBatch),
              fullBatchFraction: round(run.server.fullFraction),
              idleFraction: round(run.server.idleFraction),
              committedTokensPerSecond: Math.round(run.committedPerSecond),
              instructionTokenShare: round(run.instructionShare),
              instructionBacklogGrowth: run.backlogGrowth,
              recordsCommittedInWindow: run.recordsCommitted,
              ceilingBatchOccupancy: round(ceiling.occupancy / profile.maxBatch),
            }),
          );
        }
      } finally {
        await sim.close();
      }
    }
    return out;
  },
};
