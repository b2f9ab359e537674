/**
 * The numbers of a Magpie run report: counts, tag distributions, histograms and throughput, folded from the
 * records of a topic (and its rejects and dead letters). Pure: no Kafka, no clock, no I/O.
 */
import { RecordError } from '../core/errors.js';
import type { Conversation, DeadLetter, Instruction, PreferencePair, Rejected } from '../serde/records.generated.js';
import type { SchemaName } from '../serde/schemas.js';

/** Tag values in the order the Magpie reference defines them; values outside these lists follow by count. */
export const TASK_CATEGORIES = ['Information seeking', 'Reasoning', 'Planning', 'Editing', 'Coding & Debugging', 'Math', 'Role playing', 'Data analysis', 'Creative writing', 'Advice seeking', 'Brainstorming', 'Others'];
export const DIFFICULTIES = ['very easy', 'easy', 'medium', 'hard', 'very hard'];
export const INPUT_QUALITIES = ['very poor', 'poor', 'average', 'good', 'excellent'];
/** Label of records without the tag. */
export const UNTAGGED = '(untagged)';
/** Languages beyond this many are folded into one "other" row. */
export const TOP_LANGUAGES = 20;
const MAX_BINS = 20;
const MAX_THROUGHPUT_POINTS = 240;
const BUCKET_MINUTES = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];
const MINUTE_MS = 60_000;

export interface Count {
  label: string;
  count: number;
}

export interface Summary {
  count: number;
  min: number;
  max: number;
  mean: number;
  median: number;
  /** Nearest-rank percentiles. */
  p10: number;
  p90: number;
}

export interface Bin {
  /** Inclusive lower edge. */
  from: number;
  /** Exclusive upper edge (the last bin holds its upper edge's values too). */
  to: number;
  count: number;
}

export interface Histogram {
  bins: Bin[];
  summary: Summary | null;
}

/** A summary of one group of records, e.g. the min_neighbor_distance of one decoding setting. */
export interface GroupSummary {
  key: string;
  summary: Summary;
}

export interface Grouped {
  key: string;
  count: number;
  stages: string[];
  /** The first reason seen. */
  example: string;
}

export interface Throughput {
  bucketMinutes: number;
  /** Bucket starts, ms since the epoch. */
  starts: number[];
  /** Records per bucket (by created_at), then rejects per bucket (by rejected_at). */
  records: number[];
  rejects: number[];
  /** Records per minute: over the whole span, and in the busiest bucket. */
  meanPerMinute: number;
  peakPerMinute: number;
  first: number | null;
  last: number | null;
}

export interface ReportSources {
  topic: string;
  rejects?: string | undefined;
  deadLetter?: string | undefined;
}

/** A record shown as an example: the newest ones (by created_at) give a feel for what the feed produces now. */
export interface SampleRecord {
  uuid: string;
  createdAt: number;
  instruction: string;
  response: string | null;
  taskCategory: string | null;
  minNeighborDistance: number | null;
}

/** Records kept as examples, and the characters kept of each text. */
const SAMPLES = 5;
const SAMPLE_CHARS = 300;
const clip = (text: string) => (text.length > SAMPLE_CHARS ? `${text.slice(0, SAMPLE_CHARS - 1)}…` : text);

export interface ReportData {
  title: string;
  generatedAt: number;
  sources: ReportSources;
  totals: {
    records: number;
    /** Records per writer schema. */
    bySchema: Record<string, number>;
    /** Records that carry tags: conversations and preference pairs (bare instructions have none). */
    taggable: number;
    rejects: number;
    deadLetters: number;
    /** Records that could not be decoded or are of a schema the report does not read. */
    undecodable: number;
    truncatedResponses: number;
    /** Records the dedupe stage marked as near-duplicates (is_duplicate). */
    duplicates: number;
    unsafe: number;
    /** Records with at least one tag failure. */
    withTagFailures: number;
  };
  /** Records carrying each tag. */
  tagCoverage: Count[];
  taskCategories: Count[];
  difficulty: Count[];
  inputQuality: Count[];
  languages: Count[];
  safety: Count[];
  tagFailures: Count[];
  /** Characters. */
  instructionLength: Histogram;
  /** Characters of the response (the chosen one for preference pairs). */
  responseLength: Histogram;
  minNeighborDistance: Histogram;
  /** min_neighbor_distance per decoding setting (gen_input_configs.decoding_key), the paper's diversity comparison. */
  distanceByDecoding: GroupSummary[];
  /** min_neighbor_distance per system-prompt key. */
  distanceBySystemPrompt: GroupSummary[];
  /** instruct_reward of conversations, chosen_reward of preference pairs. */
  reward: Histogram;
  /** chosen_reward − rejected_reward of preference pairs. */
  preferenceMargin: Histogram;
  rejectRules: Grouped[];
  deadLetterCodes: Grouped[];
  undecodableReasons: Grouped[];
  throughput: Throughput;
  /** The newest records (created_at, then uuid), newest first: the same whatever order partitions were read in. */
  latest: SampleRecord[];
}

const TAGS: readonly { tag: string; present: (r: Conversation | PreferencePair) => boolean }[] = [
  { tag: 'task_category', present: (r) => r.task_category != null },
  { tag: 'difficulty', present: (r) => r.difficulty != null },
  { tag: 'input_quality', present: (r) => r.input_quality != null },
  { tag: 'llama_guard_2', present: (r) => r.llama_guard_2 != null },
  // A preference pair is scored by construction.
  { tag: 'instruct_reward', present: (r) => !('instruct_reward' in r) || r.instruct_reward != null },
  { tag: 'language', present: (r) => r.language != null },
  { tag: 'min_neighbor_distance', present: (r) => r.min_neighbor_distance != null },
];

class Counter {
  readonly counts = new Map<string, number>();

  add(label: string, n = 1): void {
    this.counts.set(label, (this.counts.get(label) ?? 0) + n);
  }

  /** `order` first (those seen, or all when `keepZeros`), then the rest by count, then label; UNTAGGED last. */
  list(order: readonly string[] = [], keepZeros = false): Count[] {
    const known = new Set(order);
    const head = order.filter((l) => keepZeros || this.counts.has(l)).map((label) => ({ label, count: this.counts.get(label) ?? 0 }));
    const rest = [...this.counts]
      .filter(([l]) => !known.has(l) && l !== UNTAGGED)
      .map(([label, count]) => ({ label, count }))
      .sort((a, b) => b.count - a.count || a.label.localeCompare(b.label));
    const untagged = this.counts.get(UNTAGGED);
    return [...head, ...rest, ...(untagged ? [{ label: UNTAGGED, count: untagged }] : [])];
  }
}

class Grouper {
  private readonly groups = new Map<string, { count: number; stages: Set<string>; example: string }>();

  add(key: string, stage: string, reason: string): void {
    const g = this.groups.get(key) ?? { count: 0, stages: new Set<string>(), example: reason };
    g.count++;
    g.stages.add(stage);
    this.groups.set(key, g);
  }

  list(): Grouped[] {
    return [...this.groups]
      .map(([key, g]) => ({ key, count: g.count, stages: [...g.stages].sort(), example: g.example }))
      .sort((a, b) => b.count - a.count || a.key.localeCompare(b.key));
  }
}

/** 1, 2, 2.5 or 5 times a power of ten: the smallest such width giving at most `maxBins` bins over `span`. */
export function niceStep(span: number, maxBins = MAX_BINS): number {
  const raw = span / maxBins;
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw * (1 - 1e-12)) return m * power;
  return 10 * power;
}

/** Decimals that print multiples of `step` exactly. */
function decimalsOf(step: number): number {
  for (let d = 0; d < 12; d++) if (Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-9) return d;
  return 12;
}

function round(x: number, decimals: number): number {
  return Number(x.toFixed(decimals));
}

export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * n) - 1)]!;
  const mid = Math.floor(n / 2);
  return {
    count: n,
    min: sorted[0]!,
    max: sorted[n - 1]!,
    mean: sorted.reduce((s, v) => s + v, 0) / n,
    median: n % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2,
    p10: rank(10),
    p90: rank(90),
  };
}

/** Equal-width bins with round edges (about `maxBins`) covering every value; the last bin holds its upper edge. */
export function histogram(values: readonly number[], maxBins = MAX_BINS): Histogram {
  const summary = summarize(values);
  if (!summary) return { bins: [], summary };
  const { min, max } = summary;
  const step = niceStep(max > min ? max - min : Math.abs(min) || 1, max > min ? maxBins : 1);
  const decimals = decimalsOf(step);
  const start = round(Math.floor(min / step + 1e-9) * step, decimals);
  const n = Math.max(1, Math.ceil((max - start) / step - 1e-9));
  const bins: Bin[] = Array.from({ length: n }, (_, i) => ({ from: round(start + i * step, decimals), to: round(start + (i + 1) * step, decimals), count: 0 }));
  for (const v of values) bins[Math.min(n - 1, Math.floor((v - start) / step + 1e-9))]!.count++;
  return { bins, summary };
}

/** Bucket width (minutes) keeping the series at most `maxPoints` long. */
function bucketMinutesFor(spanMs: number, maxPoints = MAX_THROUGHPUT_POINTS): number {
  const fits = (minutes: number) => Math.floor(spanMs / (minutes * MINUTE_MS)) + 1 <= maxPoints;
  return BUCKET_MINUTES.find(fits) ?? Math.ceil(spanMs / ((maxPoints - 1) * 1440 * MINUTE_MS)) * 1440;
}

export function throughput(created: readonly number[], rejected: readonly number[] = []): Throughput {
  const all = [...created, ...rejected];
  if (all.length === 0) return { bucketMinutes: 1, starts: [], records: [], rejects: [], meanPerMinute: 0, peakPerMinute: 0, first: null, last: null };
  // Loops, not Math.min(...all): a spread of a million arguments overflows the stack.
  const first = all.reduce((a, b) => (b < a ? b : a));
  const last = all.reduce((a, b) => (b > a ? b : a));
  const bucketMinutes = bucketMinutesFor(last - first);
  const width = bucketMinutes * MINUTE_MS;
  const origin = Math.floor(first / width) * width;
  const n = Math.floor((last - origin) / width) + 1;
  const fold = (times: readonly number[]) => {
    const out = new Array<number>(n).fill(0);
    for (const t of times) out[Math.floor((t - origin) / width)]!++;
    return out;
  };
  const records = fold(created);
  return {
    bucketMinutes,
    starts: Array.from({ length: n }, (_, i) => origin + i * width),
    records,
    rejects: fold(rejected),
    meanPerMinute: created.length / (n * bucketMinutes),
    peakPerMinute: records.reduce((a, b) => Math.max(a, b)) / bucketMinutes,
    first,
    last,
  };
}

/** One summary per group, by key. */
function groupSummaries(groups: ReadonlyMap<string, readonly number[]>): GroupSummary[] {
  return [...groups].map(([key, values]) => ({ key, summary: summarize(values)! })).sort((a, b) => a.key.localeCompare(b.key));
}

/** `unsafe\nS2` → `unsafe S2`. */
function safetyLabel(verdict: string): string {
  return verdict.trim().split(/\s+/).join(' ');
}

/** Folds records, rejects and dead letters into the report's numbers. */
export class ReportAggregator {
  private readonly bySchema = new Counter();
  private readonly categories = new Counter();
  private readonly difficulties = new Counter();
  private readonly qualities = new Counter();
  private readonly languageCounts = new Counter();
  private readonly safetyCounts = new Counter();
  private readonly failures = new Counter();
  private readonly coverage = new Counter();
  private readonly rejectRules = new Grouper();
  private readonly deadCodes = new Grouper();
  private readonly undecodable = new Grouper();
  private readonly instructionLengths: number[] = [];
  private readonly responseLengths: number[] = [];
  private readonly distances: number[] = [];
  private readonly distancesByDecoding = new Map<string, number[]>();
  private readonly distancesBySystemPrompt = new Map<string, number[]>();
  private readonly rewards: number[] = [];
  private readonly margins: number[] = [];
  private readonly created: number[] = [];
  private readonly rejectedAt: number[] = [];
  private readonly samples: SampleRecord[] = [];
  private records = 0;
  private rejects = 0;
  private deadLetters = 0;
  private undecodableCount = 0;
  private truncated = 0;
  private duplicates = 0;
  private unsafe = 0;
  private withTagFailures = 0;
  private tagged = 0;

  constructor(private readonly sources: ReportSources) {}

  /** A record of the report's topic; Instruction, Conversation and PreferencePair records are read. */
  add(schema: SchemaName, value: unknown): void {
    switch (schema) {
      case 'magpie.Instruction': {
        const r = value as Instruction;
        this.common(schema, r.instruction, r.created_at);
        this.sample({ uuid: r.uuid, createdAt: r.created_at, instruction: r.instruction, response: null, taskCategory: null, minNeighborDistance: null });
        return;
      }
      case 'magpie.Conversation': {
        const r = value as Conversation;
        this.common(schema, r.instruction, r.created_at);
        this.sample({ uuid: r.uuid, createdAt: r.created_at, instruction: r.instruction, response: r.response, taskCategory: r.task_category, minNeighborDistance: r.min_neighbor_distance });
        this.responseLengths.push(r.response.length);
        if (r.response_finish_reason === 'length') this.truncated++;
        if (r.is_duplicate) this.duplicates++;
        if (r.instruct_reward != null) this.rewards.push(r.instruct_reward);
        if (r.tag_failures.length) this.withTagFailures++;
        for (const f of r.tag_failures) this.failures.add(f.tag);
        this.tags(r);
        if (r.min_neighbor_distance != null) this.distanceBySetting(r.gen_input_configs, r.min_neighbor_distance);
        return;
      }
      case 'magpie.PreferencePair': {
        const r = value as PreferencePair;
        this.common(schema, r.instruction, r.created_at);
        this.sample({ uuid: r.uuid, createdAt: r.created_at, instruction: r.instruction, response: r.chosen, taskCategory: r.task_category, minNeighborDistance: r.min_neighbor_distance });
        this.responseLengths.push(r.chosen.length);
        if (r.candidates.find((c) => c.response === r.chosen)?.finish_reason === 'length') this.truncated++;
        this.rewards.push(r.chosen_reward);
        this.margins.push(r.chosen_reward - r.rejected_reward);
        this.tags(r);
        return;
      }
      default:
        throw new RecordError('REPORT_UNSUPPORTED_SCHEMA', `records of ${schema} are not part of a data report (it reads magpie.Instruction, magpie.Conversation and magpie.PreferencePair)`, { schema });
    }
  }

  addReject(r: Rejected): void {
    this.rejects++;
    this.rejectRules.add(r.rule, r.stage, r.reason);
    this.rejectedAt.push(r.rejected_at);
  }

  addDeadLetter(d: DeadLetter): void {
    this.deadLetters++;
    this.deadCodes.add(d.code, d.stage, d.reason);
  }

  /** A record that could not be decoded (or is of a schema the report does not read). */
  addUndecodable(topic: string, code: string, reason: string): void {
    this.undecodableCount++;
    this.undecodable.add(code, topic, reason);
  }

  private distanceBySetting(g: Conversation['gen_input_configs'], distance: number): void {
    // Records from before mixtures have no keys: their sampling and system prompt still name the group.
    const decoding = g.decoding_key ?? `t${g.temperature}-p${g.top_p}`;
    const system = g.system_prompt_key ?? (g.system_prompt == null ? 'none' : 'custom');
    for (const [groups, key] of [[this.distancesByDecoding, decoding], [this.distancesBySystemPrompt, system]] as const) {
      const list = groups.get(key) ?? groups.set(key, []).get(key)!;
      list.push(distance);
    }
  }

  private sample(r: SampleRecord): void {
    const newer = (a: SampleRecord, b: SampleRecord) => a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.uuid > b.uuid);
    if (this.samples.length === SAMPLES && !newer(r, this.samples.at(-1)!)) return;
    const at = this.samples.findIndex((s) => newer(r, s));
    this.samples.splice(at === -1 ? this.samples.length : at, 0, { ...r, instruction: clip(r.instruction), response: r.response === null ? null : clip(r.response) });
    if (this.samples.length > SAMPLES) this.samples.pop();
  }

  private common(schema: SchemaName, instruction: string, createdAt: number): void {
    this.records++;
    this.bySchema.add(schema);
    this.instructionLengths.push(instruction.length);
    this.created.push(createdAt);
  }

  private tags(r: Conversation | PreferencePair): void {
    this.tagged++;
    this.categories.add(r.task_category ?? UNTAGGED);
    this.difficulties.add(r.difficulty ?? UNTAGGED);
    this.qualities.add(r.input_quality ?? UNTAGGED);
    this.languageCounts.add(r.language ?? UNTAGGED);
    this.safetyCounts.add(r.llama_guard_2 == null ? UNTAGGED : safetyLabel(r.llama_guard_2));
    if (r.llama_guard_2?.trim().startsWith('unsafe')) this.unsafe++;
    if (r.min_neighbor_distance != null) this.distances.push(r.min_neighbor_distance);
    for (const t of TAGS) if (t.present(r)) this.coverage.add(t.tag);
  }

  result(title: string, generatedAt: number): ReportData {
    const languages = this.languageCounts.list();
    const named = languages.filter((l) => l.label !== UNTAGGED);
    const folded = named.length > TOP_LANGUAGES
      ? [...named.slice(0, TOP_LANGUAGES), { label: `other (${named.length - TOP_LANGUAGES} languages)`, count: named.slice(TOP_LANGUAGES).reduce((s, l) => s + l.count, 0) }, ...languages.filter((l) => l.label === UNTAGGED)]
      : languages;
    return {
      title,
      generatedAt,
      sources: this.sources,
      totals: {
        records: this.records,
        bySchema: Object.fromEntries(this.bySchema.counts),
        taggable: this.tagged,
        rejects: this.rejects,
        deadLetters: this.deadLetters,
        undecodable: this.undecodableCount,
        truncatedResponses: this.truncated,
        duplicates: this.duplicates,
        unsafe: this.unsafe,
        withTagFailures: this.withTagFailures,
      },
      tagCoverage: this.tagged ? TAGS.map(({ tag }) => ({ label: tag, count: this.coverage.counts.get(tag) ?? 0 })) : [],
      taskCategories: this.categories.list(TASK_CATEGORIES),
      difficulty: this.difficulties.list(DIFFICULTIES, this.tagged > 0),
      inputQuality: this.qualities.list(INPUT_QUALITIES, this.tagged > 0),
      languages: folded,
      safety: this.safetyCounts.list(['safe']),
      tagFailures: this.failures.list(),
      instructionLength: histogram(this.instructionLengths),
      responseLength: histogram(this.responseLengths),
      minNeighborDistance: histogram(this.distances),
      distanceByDecoding: groupSummaries(this.distancesByDecoding),
      distanceBySystemPrompt: groupSummaries(this.distancesBySystemPrompt),
      reward: histogram(this.rewards),
      preferenceMargin: histogram(this.margins),
      rejectRules: this.rejectRules.list(),
      deadLetterCodes: this.deadCodes.list(),
      undecodableReasons: this.undecodable.list(),
      throughput: throughput(this.created, this.rejectedAt),
      latest: this.samples.map((r) => ({ ...r })),
    };
  }
}
