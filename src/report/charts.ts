/**
 * Small inline SVG charts for the report page: no library, no script, no external request. Every text is
 * escaped; each mark has a <title>, so hovering shows the exact number.
 */
import type { Bin, Count } from './aggregate.js';

const WIDTH = 600;
const ACCENT = '#3b6fd8';
const MUTED = '#b8bec9';
const SECOND = '#d0584b';
const LABEL_CHARS = 28;

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** 1234567 → 1,234,567; fractions keep 4 significant digits. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const text = Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(4)));
  return text.includes('e') ? text : text.replace(/^(-?)(\d+)/, (_, sign: string, digits: string) => sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ','));
}

export function percent(count: number, total: number): string {
  return total > 0 ? `${((100 * count) / total).toFixed(1)}%` : '–';
}

function shorten(label: string): string {
  return label.length > LABEL_CHARS ? `${label.slice(0, LABEL_CHARS - 1)}…` : label;
}

const num = (x: number) => Number(x.toFixed(1));

function svg(height: number, body: string, label: string, width = WIDTH): string {
  return `<svg class="chart" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(label)}">${body}</svg>`;
}

function noData(label: string): string {
  return svg(48, `<text x="${WIDTH / 2}" y="28" text-anchor="middle" class="empty">no data</text>`, label);
}

/** Horizontal bars, one row per count, with the count and its share of `total`. */
export function barChart(rows: readonly Count[], label: string, total = rows.reduce((s, r) => s + r.count, 0)): string {
  if (rows.length === 0) return noData(label);
  const labelWidth = 190;
  const valueWidth = 110;
  const rowHeight = 22;
  const max = Math.max(1, ...rows.map((r) => r.count));
  const scale = (WIDTH - labelWidth - valueWidth) / max;
  const body = rows
    .map((r, i) => {
      const y = i * rowHeight + 4;
      const w = num(Math.max(r.count > 0 ? 1 : 0, r.count * scale));
      const fill = r.label.startsWith('(') ? MUTED : ACCENT;
      const text = `${formatNumber(r.count)} · ${percent(r.count, total)}`;
      return `<g class="bar"><title>${escapeHtml(`${r.label}: ${text}`)}</title>` +
        `<text x="${labelWidth - 8}" y="${y + 13}" text-anchor="end">${escapeHtml(shorten(r.label))}</text>` +
        `<rect x="${labelWidth}" y="${y + 2}" width="${w}" height="14" rx="2" fill="${fill}"/>` +
        `<text x="${num(labelWidth + w + 6)}" y="${y + 13}" class="value">${escapeHtml(text)}</text></g>`;
    })
    .join('');
  return svg(rows.length * rowHeight + 8, body, label);
}

interface Axes {
  left: number;
  right: number;
  top: number;
  bottom: number;
  height: number;
}

// Room above the plot for the legend of line charts.
const AXES: Axes = { left: 56, right: 16, top: 28, bottom: 36, height: 256 };

/** Grid lines with labels at 0, the middle and `max` of the y axis; counts get whole-number lines only. */
function yAxis(max: number, format: (v: number) => string, counts: boolean, width = WIDTH): string {
  const plotHeight = AXES.height - AXES.top - AXES.bottom;
  const middle = counts ? (max >= 2 ? [Math.round(max / 2)] : []) : [max / 2];
  return [0, ...middle, max]
    .map((v) => {
      const y = num(AXES.top + plotHeight * (1 - v / max));
      return `<line x1="${AXES.left}" x2="${width - AXES.right}" y1="${y}" y2="${y}" class="grid"/>` +
        `<text x="${AXES.left - 6}" y="${num(y + 4)}" text-anchor="end" class="tick">${escapeHtml(format(v))}</text>`;
    })
    .join('');
}

/** Labels under the x axis at up to about `most` evenly spaced positions, the last one among them when the spacing allows. */
function xTicks(positions: readonly { x: number; text: string }[], most = 7): string {
  const last = positions.length - 1;
  const base = Math.max(1, Math.ceil(positions.length / most));
  let every = base;
  while (every < 2 * base && last % every !== 0) every++;
  if (last % every !== 0) every = base;
  return positions
    .filter((_, i) => i % every === 0)
    .map((p) => `<text x="${num(p.x)}" y="${AXES.height - AXES.bottom + 16}" text-anchor="middle" class="tick">${escapeHtml(p.text)}</text>`)
    .join('');
}

/** Vertical bars over equal-width bins. */
export function histogramChart(bins: readonly Bin[], label: string, unit = ''): string {
  if (bins.length === 0) return noData(label);
  const plotWidth = WIDTH - AXES.left - AXES.right;
  const plotHeight = AXES.height - AXES.top - AXES.bottom;
  const max = Math.max(1, ...bins.map((b) => b.count));
  const step = plotWidth / bins.length;
  const total = bins.reduce((s, b) => s + b.count, 0);
  const bars = bins
    .map((b, i) => {
      const h = (b.count / max) * plotHeight;
      const last = i === bins.length - 1;
      const range = `${formatNumber(b.from)}–${formatNumber(b.to)}${unit}${last ? ' (inclusive)' : ''}`;
      return `<rect x="${num(AXES.left + i * step + 0.5)}" y="${num(AXES.top + plotHeight - h)}" width="${num(Math.max(1, step - 1))}" height="${num(h)}" fill="${ACCENT}">` +
        `<title>${escapeHtml(`${range}: ${formatNumber(b.count)} (${percent(b.count, total)})`)}</title></rect>`;
    })
    .join('');
  const edges = [...bins.map((b, i) => ({ x: AXES.left + i * step, text: formatNumber(b.from) })), { x: AXES.left + plotWidth, text: formatNumber(bins[bins.length - 1]!.to) }];
  const axis = `<line x1="${AXES.left}" x2="${WIDTH - AXES.right}" y1="${AXES.top + plotHeight}" y2="${AXES.top + plotHeight}" class="axis"/>`;
  return svg(AXES.height, yAxis(max, formatNumber, true) + bars + axis + xTicks(edges), label);
}

export interface Series {
  name: string;
  values: readonly number[];
  dashed?: boolean;
}

/** Lines over time (x: bucket starts, ms since the epoch), with a legend. */
export function lineChart(starts: readonly number[], series: readonly Series[], label: string, formatTime: (ms: number) => string, width = WIDTH): string {
  if (starts.length === 0) return noData(label);
  const plotWidth = width - AXES.left - AXES.right;
  const plotHeight = AXES.height - AXES.top - AXES.bottom;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const x = (i: number) => AXES.left + (starts.length === 1 ? plotWidth / 2 : (i * plotWidth) / (starts.length - 1));
  const y = (v: number) => AXES.top + plotHeight * (1 - v / max);
  const colors = [ACCENT, SECOND];
  const lines = series
    .map((s, k) => {
      const color = colors[k % colors.length]!;
      const points = s.values.map((v, i) => `${num(x(i))},${num(y(v))}`).join(' ');
      const dots = starts.length <= 60
        ? s.values.map((v, i) => `<circle cx="${num(x(i))}" cy="${num(y(v))}" r="2.5" fill="${color}"><title>${escapeHtml(`${formatTime(starts[i]!)} ${s.name}: ${formatNumber(v)}`)}</title></circle>`).join('')
        : '';
      return `<polyline points="${points}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>${dots}`;
    })
    .join('');
  const legend = series
    .map((s, k) => `<g transform="translate(${AXES.left + k * 150},4)"><rect width="12" height="3" y="4" fill="${colors[k % colors.length]}"/><text x="18" y="9" class="tick" text-anchor="start">${escapeHtml(s.name)}</text></g>`)
    .join('');
  const ticks = xTicks(starts.map((t, i) => ({ x: x(i), text: formatTime(t) })), Math.floor(width / 110));
  const axis = `<line x1="${AXES.left}" x2="${width - AXES.right}" y1="${AXES.top + plotHeight}" y2="${AXES.top + plotHeight}" class="axis"/>`;
  return svg(AXES.height, yAxis(max, formatNumber, false, width) + axis + lines + ticks + legend, label, width);
}
