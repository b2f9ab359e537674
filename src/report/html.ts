/**
 * Renders a ReportData as one self-contained HTML page: inline CSS and SVG, no script to run, no external
 * request. The numbers are embedded as JSON in `<script type="application/json" id="report-data">` for
 * tests and notebooks to read back.
 */
import type { Count, Grouped, GroupSummary, Histogram, ReportData, SampleRecord } from './aggregate.js';
import { barChart, escapeHtml, formatNumber, histogramChart, lineChart, percent } from './charts.js';

/** JSON that cannot end the script element it sits in, nor open a comment there. */
export function embeddedJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** UTC, minutes precision: `2025-06-15 14:05`. */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

/** viewBox width of charts spanning both columns. */
const WIDE_CHART = 1180;

const CSS = `
*{box-sizing:border-box}
body{margin:0;padding:24px 32px;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;color:#1d2330;background:#f5f6f8}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:15px;margin:0 0 8px}
.meta{color:#5b6475;margin:0 0 16px}
.meta code{background:#e8ebf0;padding:1px 5px;border-radius:3px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:0 0 18px}
.tile{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 12px}
.tile .n{font-size:20px;font-weight:600}
.tile .l{color:#5b6475;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 14px;overflow-x:auto}
figure.wide{grid-column:1/-1}
figcaption{font-weight:600;margin-bottom:2px}
.sub{color:#5b6475;font-size:12px;margin:0 0 8px}
svg.chart{display:block;max-width:100%;height:auto;font-size:12px}
svg text{fill:#1d2330}
svg text.value,svg text.tick{fill:#5b6475;font-size:11px}
svg text.empty{fill:#8a92a3;font-style:italic}
svg line.grid{stroke:#eceef2}
svg line.axis{stroke:#9aa3b2}
table{border-collapse:collapse;width:100%;font-size:12px;margin-top:8px}
th,td{text-align:left;padding:4px 6px;border-top:1px solid #eceef2;vertical-align:top}
th{color:#5b6475;font-weight:600}
td.num{text-align:right;white-space:nowrap}
td.reason{color:#5b6475;word-break:break-word}
`;

function tile(value: string, label: string): string {
  return `<div class="tile"><div class="n">${escapeHtml(value)}</div><div class="l">${escapeHtml(label)}</div></div>`;
}

function figure(id: string, title: string, subtitle: string, body: string, wide = false): string {
  return `<figure data-chart="${escapeHtml(id)}"${wide ? ' class="wide"' : ''}><figcaption>${escapeHtml(title)}</figcaption><p class="sub">${escapeHtml(subtitle)}</p>${body}</figure>`;
}

function summaryLine(h: Histogram, unit = ''): string {
  const s = h.summary;
  if (!s) return 'no values';
  const f = (v: number) => `${formatNumber(v)}${unit}`;
  return `n ${formatNumber(s.count)} · min ${f(s.min)} · p10 ${f(s.p10)} · median ${f(s.median)} · mean ${f(s.mean)} · p90 ${f(s.p90)} · max ${f(s.max)}`;
}

function distribution(id: string, title: string, rows: readonly Count[], total: number): string {
  const tagged = rows.filter((r) => !r.label.startsWith('(')).reduce((s, r) => s + r.count, 0);
  return figure(id, title, `${formatNumber(tagged)} of ${formatNumber(total)} records tagged`, barChart(rows, title, total));
}

function latestTable(rows: readonly SampleRecord[]): string {
  if (rows.length === 0) return '<p class="sub">no records yet</p>';
  const cell = (v: string | number | null) => (v === null ? '<td class="sub">–</td>' : `<td>${escapeHtml(String(v))}</td>`);
  const body = rows
    .map((r) => `<tr>${cell(formatTime(r.createdAt))}${cell(r.instruction)}${cell(r.response)}${cell(r.taskCategory)}${cell(r.minNeighborDistance === null ? null : r.minNeighborDistance.toFixed(3))}</tr>`)
    .join('');
  return `<table class="latest"><thead><tr><th>created (UTC)</th><th>instruction</th><th>response</th><th>task</th><th>min distance</th></tr></thead><tbody>${body}</tbody></table>`;
}

function groupedTable(rows: readonly Grouped[], keyName: string, total: number): string {
  if (rows.length === 0) return '';
  const body = rows
    .map((g) => `<tr><td>${escapeHtml(g.key)}</td><td class="num">${formatNumber(g.count)}</td><td class="num">${percent(g.count, total)}</td><td>${escapeHtml(g.stages.join(', '))}</td><td class="reason">${escapeHtml(g.example.length > 300 ? `${g.example.slice(0, 299)}…` : g.example)}</td></tr>`)
    .join('');
  return `<table><thead><tr><th>${escapeHtml(keyName)}</th><th>count</th><th>share</th><th>stage</th><th>example reason</th></tr></thead><tbody>${body}</tbody></table>`;
}

/** min_neighbor_distance by group: higher is more diverse. */
function groupSummaryTable(rows: readonly GroupSummary[], keyName: string): string {
  const f = (v: number) => formatNumber(v);
  const body = rows
    .map(({ key, summary: s }) => `<tr><td>${escapeHtml(key)}</td><td class="num">${f(s.count)}</td><td class="num">${f(s.mean)}</td><td class="num">${f(s.p10)}</td><td class="num">${f(s.median)}</td><td class="num">${f(s.p90)}</td></tr>`)
    .join('');
  return `<table><thead><tr><th>${escapeHtml(keyName)}</th><th>records</th><th>mean</th><th>p10</th><th>median</th><th>p90</th></tr></thead><tbody>${body}</tbody></table>`;
}

/** Axis labels: `14:05` within one UTC day (the subtitle gives the date), else `06-15 14:05`. */
function tickFormat(first: number | null, last: number | null): (ms: number) => string {
  const sameDay = first !== null && last !== null && formatTime(first).slice(0, 10) === formatTime(last).slice(0, 10);
  return (ms) => formatTime(ms).slice(sameDay ? 11 : 5);
}

/** The page; `head` adds to its head (the live report's refresh script). */
export function renderReport(data: ReportData, head = ''): string {
  const t = data.totals;
  const tagged = t.taggable;
  const span = data.throughput.first === null || data.throughput.last === null ? '–' : `${formatTime(data.throughput.first)} → ${formatTime(data.throughput.last)} UTC`;
  const sources = [
    `topic <code>${escapeHtml(data.sources.topic)}</code>`,
    ...(data.sources.rejects ? [`rejects <code>${escapeHtml(data.sources.rejects)}</code>`] : []),
    ...(data.sources.deadLetter ? [`dead letters <code>${escapeHtml(data.sources.deadLetter)}</code>`] : []),
  ].join(' · ');
  const schemas = Object.entries(t.bySchema).map(([name, n]) => `${formatNumber(n)} ${name}`).join(', ') || 'no records';

  const tiles = [
    tile(formatNumber(t.records), 'records'),
    tile(formatNumber(t.rejects), 'rejects'),
    tile(formatNumber(t.deadLetters), 'dead letters'),
    tile(formatNumber(t.duplicates), 'near-duplicates'),
    tile(formatNumber(t.truncatedResponses), 'truncated responses'),
    tile(formatNumber(t.unsafe), 'unsafe (Llama Guard)'),
    tile(formatNumber(t.withTagFailures), 'with tag failures'),
    tile(formatNumber(t.undecodable), 'undecodable'),
    tile(formatNumber(data.throughput.meanPerMinute), 'records / minute (mean)'),
    tile(formatNumber(data.throughput.peakPerMinute), 'records / minute (peak)'),
  ].join('');

  const charts = [
    distribution('task-category', 'Task category', data.taskCategories, tagged),
    distribution('difficulty', 'Difficulty', data.difficulty, tagged),
    distribution('input-quality', 'Input quality', data.inputQuality, tagged),
    distribution('language', 'Language', data.languages, tagged),
    distribution('safety', 'Safety (Llama Guard 2)', data.safety, tagged),
    figure('tag-coverage', 'Tag coverage', 'records carrying each tag', barChart(data.tagCoverage, 'Tag coverage', tagged)),
    figure('instruction-length', 'Instruction length (characters)', summaryLine(data.instructionLength), histogramChart(data.instructionLength.bins, 'Instruction length')),
    figure('response-length', 'Response length (characters)', summaryLine(data.responseLength), histogramChart(data.responseLength.bins, 'Response length')),
    figure('min-neighbor-distance', 'Min neighbor distance', `${formatNumber(t.duplicates)} near-duplicates · ${summaryLine(data.minNeighborDistance)}`, histogramChart(data.minNeighborDistance.bins, 'Min neighbor distance')),
    ...(data.distanceByDecoding.length > 0
      ? [
        figure('distance-by-decoding', 'Min neighbor distance by decoding setting', 'diversity of each sampling setting (gen_input_configs.decoding_key)', groupSummaryTable(data.distanceByDecoding, 'decoding setting')),
        figure('distance-by-system-prompt', 'Min neighbor distance by system prompt', 'diversity under each system prompt (gen_input_configs.system_prompt_key)', groupSummaryTable(data.distanceBySystemPrompt, 'system prompt')),
      ]
      : []),
    figure('reward', 'Reward', `instruct_reward (chosen_reward for preference pairs) · ${summaryLine(data.reward)}`, histogramChart(data.reward.bins, 'Reward')),
    ...(data.preferenceMargin.summary ? [figure('preference-margin', 'Preference margin', `chosen_reward − rejected_reward · ${summaryLine(data.preferenceMargin)}`, histogramChart(data.preferenceMargin.bins, 'Preference margin'))] : []),
    figure('throughput', 'Throughput', `records and rejects per minute, ${data.throughput.bucketMinutes}-minute buckets · ${span}`,
      lineChart(data.throughput.starts, [
        { name: 'records / min', values: data.throughput.records.map((c) => c / data.throughput.bucketMinutes) },
        ...(data.throughput.rejects.some((c) => c > 0) ? [{ name: 'rejects / min', values: data.throughput.rejects.map((c) => c / data.throughput.bucketMinutes), dashed: true }] : []),
      ], 'Throughput', tickFormat(data.throughput.first, data.throughput.last), WIDE_CHART), true),
    figure('reject-rules', 'Reject reasons by rule', `${formatNumber(t.rejects)} rejects`,
      barChart(data.rejectRules.map((g) => ({ label: g.key, count: g.count })), 'Reject reasons') + groupedTable(data.rejectRules, 'rule', t.rejects), true),
    figure('dead-letters', 'Dead letters by code', `${formatNumber(t.deadLetters)} dead letters`,
      barChart(data.deadLetterCodes.map((g) => ({ label: g.key, count: g.count })), 'Dead letters') + groupedTable(data.deadLetterCodes, 'code', t.deadLetters), true),
    figure('tag-failures', 'Tag failures by tag', `${formatNumber(t.withTagFailures)} records with at least one`, barChart(data.tagFailures, 'Tag failures', t.records)),
    figure('latest-records', 'Latest records', `the ${data.latest.length} newest by created_at`, latestTable(data.latest), true),
    ...(t.undecodable ? [figure('undecodable', 'Undecodable records', `${formatNumber(t.undecodable)} records skipped`, groupedTable(data.undecodableReasons, 'code', t.undecodable), true)] : []),
  ].join('\n');

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(data.title)}</title>
<style>${CSS}</style>${head}
</head>
<body>
<h1>${escapeHtml(data.title)}</h1>
<p class="meta">${sources} · ${escapeHtml(schemas)} · generated ${escapeHtml(formatTime(data.generatedAt))} UTC</p>
<div class="tiles">${tiles}</div>
<div class="grid">
${charts}
</div>
<script type="application/json" id="report-data">${embeddedJson(data)}</script>
</body>
</html>
`;
}
