import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Measurement } from './harness.js';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGb: number;
  node: string;
  platform: string;
  /** 1-minute load average when the run started: other work on the machine skews absolute figures. */
  loadAverage: number;
}

export interface BenchResults {
  startedAt: string;
  durationSeconds: number;
  quick: boolean;
  suites: string[];
  machine: MachineInfo;
  measurements: Measurement[];
  failures: { suite: string; error: string }[];
}

function cpuModelName(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) return line.split(':')[1]!.trim();
  } catch {
    // not Linux: fall back to what Node reports
  }
  return cpus()[0]?.model ?? 'unknown';
}

export function machineInfo(): MachineInfo {
  return {
    cpuModel: cpuModelName(),
    cores: cpus().length,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadAverage: Number(loadavg()[0]!.toFixed(2)),
  };
}

/** 3 significant digits, thousands separated: 12,300 · 45.6 · 0.0123. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  const rounded = Number(x.toPrecision(3));
  return rounded.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function ratioCell(m: Measurement): string {
  if (m.ratio === undefined) return '';
  return `${m.ratio.toFixed(m.ratio < 10 ? 2 : 1)}×`;
}

/** The results as a markdown table, one row per measurement. */
export function markdownTable(measurements: readonly Measurement[]): string {
  const rows = [
    '| suite | measurement | value | baseline (same run) | baseline value | ratio |',
    '|---|---|---:|---|---:|---:|',
  ];
  for (const m of measurements) {
    const unit = m.unit ? ` ${m.unit}` : '';
    rows.push(
      `| ${m.suite} | ${m.name} | ${formatNumber(m.value)}${unit} | ${m.baseline?.name ?? ''} | ${m.baseline ? `${formatNumber(m.baseline.value)}${unit}` : ''} | ${ratioCell(m)} |`,
    );
  }
  return rows.join('\n');
}

export function markdownReport(results: BenchResults): string {
  const m = results.machine;
  return [
    `Run ${results.startedAt} (${results.quick ? 'quick' : 'full'}, ${Math.round(results.durationSeconds)} s), ` +
      `${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB, Node ${m.node}, load average ${m.loadAverage} at start.`,
    '',
    markdownTable(results.measurements),
    ...(results.failures.length ? ['', 'Failed suites:', ...results.failures.map((f) => `- ${f.suite}: ${f.error}`)] : []),
    '',
  ].join('\n');
}

export async function writeResults(results: BenchResults, jsonPath: string, markdownPath: string): Promise<void> {
  await mkdir(dirname(jsonPath), { recursive: true });
  await writeFile(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(markdownPath, markdownReport(results));
}
