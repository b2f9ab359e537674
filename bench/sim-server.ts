/**
 * A loopback stand-in for a continuous-batching inference server (vLLM-like), for the pipeline benchmark.
 *
 * Decode model: every active sequence advances one token per step; a step over b sequences takes
 * t(b) = t0 + t1·b (memory-bound weights read + per-sequence work), so one stream runs at 1/t0 tokens/s and a full
 * batch of `maxBatch` at `ceilingTokensPerSecond`. Latency per request therefore grows with concurrency and the
 * server only reaches its ceiling when `maxBatch` sequences are active. Requests beyond the batch wait FIFO and
 * are admitted whole (all `n` samples at once) as slots free up, as vLLM's scheduler does. Prefill is not modelled.
 *
 * `timeScale` runs the simulated clock faster than the wall clock so a steady state fits in seconds; every
 * pipeline overhead (Kafka round trips, commits) is then `timeScale` times heavier relative to the server than
 * in production, so efficiencies measured this way are lower bounds. Figures in /stats are in simulated time.
 *
 * Run alone: `node --import tsx bench/sim-server.ts '{"ceilingTokensPerSecond":5000}'` prints `{"port":N}`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';

export type LengthDistribution =
  | { kind: 'fixed'; tokens: number }
  | { kind: 'uniform'; min: number; max: number }
  /** exp(N(ln median, sigma²)): long right tail, like real answer lengths. */
  | { kind: 'lognormal'; median: number; sigma: number };

export interface SimServerOptions {
  /** Decode tokens/s of a full batch (simulated time). */
  ceilingTokensPerSecond: number;
  /** Decode tokens/s of a single sequence alone (simulated time). */
  singleStreamTokensPerSecond: number;
  /** Most sequences decoded at once (vLLM max_num_seqs). */
  maxBatch: number;
  /** Simulated seconds per wall-clock second. */
  timeScale: number;
  /** Lengths of pre-query completions (user turns): prompts that do not end with an assistant header. */
  instructionLengths: LengthDistribution;
  /** Lengths of answers: chat requests and completions whose prompt ends with an assistant header. */
  responseLengths: LengthDistribution;
  seed: number;
  tickMs: number;
}

export const DEFAULT_SIM_OPTIONS: SimServerOptions = {
  ceilingTokensPerSecond: 5_000,
  singleStreamTokensPerSecond: 120,
  maxBatch: 256,
  timeScale: 1,
  instructionLengths: { kind: 'lognormal', median: 30, sigma: 0.5 },
  responseLengths: { kind: 'lognormal', median: 350, sigma: 0.6 },
  seed: 1,
  tickMs: 5,
};

/** Counters since the server started; subtract two snapshots for a window. Times are simulated seconds. */
export interface SimStats {
  simSeconds: number;
  wallSeconds: number;
  /** Tokens decoded (fractional: progress of unfinished sequences included). */
  tokensDecoded: number;
  /** Tokens in responses sent. */
  tokensCompleted: number;
  requestsCompleted: number;
  requestsCancelled: number;
  /** ∫ active sequences dt: divide by simSeconds·maxBatch for the mean batch occupancy. */
  sequenceSeconds: number;
  /** Time with a full batch. */
  fullSeconds: number;
  /** Time with nothing to decode. */
  idleSeconds: number;
  activeSequences: number;
  queuedRequests: number;
}

/** Deterministic uniform [0, 1) stream (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sampleLength(dist: LengthDistribution, random: () => number): number {
  switch (dist.kind) {
    case 'fixed':
      return Math.max(1, Math.round(dist.tokens));
    case 'uniform':
      return Math.max(1, Math.round(dist.min + random() * (dist.max - dist.min)));
    case 'lognormal': {
      const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      return Math.max(1, Math.round(dist.median * Math.exp(dist.sigma * normal)));
    }
  }
}

/** Mean of a length distribution capped at maxTokens, by sampling (for sizing runs and explaining results). */
export function meanLength(dist: LengthDistribution, maxTokens: number, samples = 20_000): number {
  const random = rng(12345);
  let sum = 0;
  for (let i = 0; i < samples; i++) sum += Math.min(maxTokens, sampleLength(dist, random));
  return sum / samples;
}

const WORDS = ['how', 'can', 'I', 'write', 'a', 'short', 'story', 'about', 'the', 'ocean', 'explain', 'why', 'data', 'model', 'works', 'in', 'simple', 'terms', 'please', 'list'];

interface Sequence {
  request: SimRequest;
  length: number;
  /** Global progress value at which this sequence has all its tokens. */
  finishAt: number;
}

interface SimRequest {
  id: number;
  chat: boolean;
  n: number;
  lengths: number[];
  maxTokens: number;
  remaining: number;
  res: ServerResponse;
  model: string;
  done: boolean;
}

/** Binary min-heap of sequences by finishAt. */
class FinishHeap {
  private readonly items: Sequence[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Sequence | undefined {
    return this.items[0];
  }

  push(item: Sequence): void {
    const a = this.items;
    a.push(item);
    for (let i = a.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (a[parent]!.finishAt <= a[i]!.finishAt) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }

  pop(): Sequence | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.finishAt < a[m]!.finishAt) m = l;
        if (r < a.length && a[r]!.finishAt < a[m]!.finishAt) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }

  /** Drops the sequences of cancelled requests. */
  removeWhere(pred: (s: Sequence) => boolean): void {
    const keep = this.items.filter((s) => !pred(s));
    this.items.length = 0;
    for (const s of keep) this.push(s);
  }
}

/** The simulated engine, separate from HTTP so it can be reasoned about alone. */
export class SimEngine {
  private readonly t0: number;
  private readonly t1: number;
  private readonly random: () => number;
  private readonly active = new FinishHeap();
  private readonly queue: SimRequest[] = [];
  /** Tokens each active sequence has decoded since the start (all advance together). */
  private progress = 0;
  private readonly startWall = performance.now();
  private lastWall = this.startWall;
  private nextId = 0;
  private readonly stats = { simSeconds: 0, tokensDecoded: 0, tokensCompleted: 0, requestsCompleted: 0, requestsCancelled: 0, sequenceSeconds: 0, fullSeconds: 0, idleSeconds: 0 };

  constructor(readonly options: SimServerOptions) {
    this.t0 = 1 / options.singleStreamTokensPerSecond;
    const full = options.maxBatch / options.ceilingTokensPerSecond;
    if (full <= this.t0) throw new Error(`sim: a full batch of ${options.maxBatch} at ${options.ceilingTokensPerSecond} tok/s is faster per step than one stream at ${options.singleStreamTokensPerSecond} tok/s`);
    this.t1 = (full - this.t0) / options.maxBatch;
    this.random = rng(options.seed);
  }

  /** Seconds per decode step with b sequences. */
  stepSeconds(b: number): number {
    return this.t0 + this.t1 * b;
  }

  submit(req: Omit<SimRequest, 'id' | 'lengths' | 'remaining' | 'done'>, kind: 'instruction' | 'response'): SimRequest {
    const dist = kind === 'instruction' ? this.options.instructionLengths : this.options.responseLengths;
    const lengths = Array.from({ length: req.n }, () => sampleLength(dist, this.random));
    const request: SimRequest = { ...req, id: this.nextId++, lengths, remaining: req.n, done: false };
    this.queue.push(request);
    this.admit();
    return request;
  }

  cancel(request: SimRequest): void {
    if (request.done) return;
    request.done = true;
    this.stats.requestsCancelled++;
    const q = this.queue.indexOf(request);
    if (q >= 0) this.queue.splice(q, 1);
    else this.active.removeWhere((s) => s.request === request);
    this.admit();
  }

  private admit(): void {
    while (this.queue.length > 0 && this.active.size + this.queue[0]!.n <= this.options.maxBatch) {
      const request = this.queue.shift()!;
      request.lengths.forEach((length, i) => {
        const capped = Math.min(length, request.maxTokens);
        request.lengths[i] = capped;
        this.active.push({ request, length: capped, finishAt: this.progress + capped });
      });
    }
  }

  /** Advances the simulation to now, completing sequences exactly when their last token is decoded. */
  tick(): void {
    const now = performance.now();
    let sim = ((now - this.lastWall) / 1000) * this.options.timeScale;
    this.lastWall = now;
    this.stats.simSeconds += sim;
    while (sim > 0) {
      const b = this.active.size;
      if (b === 0) {
        this.stats.idleSeconds += sim;
        break;
      }
      const rate = 1 / this.stepSeconds(b);
      const next = this.active.peek()!;
      const untilNext = Math.max(0, (next.finishAt - this.progress) / rate);
      const dt = Math.min(sim, untilNext);
      this.progress += dt * rate;
      this.stats.tokensDecoded += dt * rate * b;
      this.stats.sequenceSeconds += dt * b;
      if (b >= this.options.maxBatch) this.stats.fullSeconds += dt;
      sim -= dt;
      if (dt === untilNext) {
        while (this.active.size > 0 && this.active.peek()!.finishAt <= this.progress + 1e-9) this.finish(this.active.pop()!);
        this.admit();
      }
    }
  }

  private finish(seq: Sequence): void {
    const request = seq.request;
    if (request.done) return;
    if (--request.remaining > 0) return;
    request.done = true;
    const tokens = request.lengths.reduce((a, b) => a + b, 0);
    this.stats.tokensCompleted += tokens;
    this.stats.requestsCompleted++;
    respond(request, tokens);
  }

  snapshot(): SimStats {
    return { ...this.stats, wallSeconds: (performance.now() - this.startWall) / 1000, activeSequences: this.active.size, queuedRequests: this.queue.length };
  }
}

function respond(request: SimRequest, totalTokens: number): void {
  const choices = request.lengths.map((length, index) => {
    const words: string[] = [];
    for (let i = 0; i < length; i++) words.push(WORDS[(request.id * 7 + index * 13 + i) % WORDS.length]!);
    const text = `${words.join(' ')} #${request.id}.${index}?`;
    const finish_reason = length >= request.maxTokens ? 'length' : 'stop';
    return request.chat ? { index, message: { role: 'assistant', content: text }, finish_reason } : { index, text, finish_reason };
  });
  const body = JSON.stringify({
    id: `sim-${request.id}`,
    object: request.chat ? 'chat.completion' : 'text_completion',
    model: request.model,
    choices,
    usage: { prompt_tokens: 0, completion_tokens: totalTokens, total_tokens: totalTokens },
  });
  request.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  request.res.end(body);
}

/** Chat requests and prompts ending in an assistant header ask for an answer; anything else for a user turn. */
function requestKind(chat: boolean, prompt: unknown): 'instruction' | 'response' {
  if (chat) return 'response';
  const text = Array.isArray(prompt) ? String(prompt[0] ?? '') : String(prompt ?? '');
  return text.slice(-64).includes('assistant') ? 'response' : 'instruction';
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export interface SimServer {
  readonly url: string;
  readonly engine: SimEngine;
  close(): Promise<void>;
}

/** Starts the simulated server on 127.0.0.1 (port 0: any free port). */
export async function startSimServer(partial: Partial<SimServerOptions> = {}, port = 0): Promise<SimServer> {
  const options: SimServerOptions = { ...DEFAULT_SIM_OPTIONS, ...partial };
  const engine = new SimEngine(options);
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0]!;
      if (req.method === 'GET' && path === '/stats') return sendJson(res, 200, engine.snapshot());
      if (req.method === 'GET' && path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [{ id: 'sim', object: 'model' }] });
      const chat = path === '/v1/chat/completions';
      if (req.method !== 'POST' || (!chat && path !== '/v1/completions')) return sendJson(res, 404, { error: { message: `no route ${req.method} ${path}` } });
      let body: { n?: number; max_tokens?: number; prompt?: unknown; messages?: unknown; model?: string; stream?: boolean };
      try {
        body = JSON.parse(await readBody(req)) as typeof body;
      } catch {
        return sendJson(res, 400, { error: { message: 'body is not JSON' } });
      }
      if (body.stream) return sendJson(res, 400, { error: { message: 'streaming is not simulated' } });
      const n = Math.max(1, Math.floor(body.n ?? 1));
      if (n > options.maxBatch) return sendJson(res, 400, { error: { message: `n=${n} exceeds max batch ${options.maxBatch}` } });
      const request = engine.submit({ chat, n, maxTokens: Math.max(1, body.max_tokens ?? 16), res, model: body.model ?? 'sim' }, requestKind(chat, chat ? undefined : body.prompt));
      res.on('close', () => {
        if (!res.writableFinished) engine.cancel(request);
      });
    })();
  });
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  server.maxHeadersCount = 100;
  const timer = setInterval(() => engine.tick(), options.tickMs);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    engine,
    close: async () => {
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const options = JSON.parse(process.argv[2] ?? '{}') as Partial<SimServerOptions>;
  const sim = await startSimServer(options, Number(process.env.SIM_PORT ?? 0));
  process.stdout.write(`${JSON.stringify({ port: Number(new URL(sim.url).port) })}\n`);
  const stop = () => void sim.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
