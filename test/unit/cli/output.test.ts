import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../../src/core/errors.js';
import { StageMetrics } from '../../../src/core/metrics.js';
import { createCliLogger, logFormatFor, Terminal, type TerminalStream } from '../../../src/cli/output.js';
import { startProgress } from '../../../src/cli/progress.js';

/** A stream that keeps what was written, as a terminal (isTTY) or as a pipe. */
function fakeStream(isTTY: boolean): TerminalStream & { text: string } {
  const s = { text: '', isTTY, columns: 200, write: (t: string) => (s.text += t) };
  return s;
}

const CLEAR = '\r\x1b[2K';

describe('log format', () => {
  it('is readable on a terminal and JSON when piped, unless chosen', () => {
    expect(logFormatFor(undefined, { isTTY: true, write: () => true }, {})).toBe('pretty');
    expect(logFormatFor(undefined, { isTTY: false, write: () => true }, {})).toBe('json');
    expect(logFormatFor('json', { isTTY: true, write: () => true }, {})).toBe('json');
    expect(logFormatFor(undefined, { isTTY: false, write: () => true }, { MAGPIE_LOG_FORMAT: 'pretty' })).toBe('pretty');
    expect(() => logFormatFor('xml', { isTTY: true, write: () => true }, {})).toThrow(ConfigError);
  });
});

describe('CLI logger', () => {
  it('writes one JSON object a line in json mode, as machines read it', () => {
    const stream = fakeStream(false);
    const logger = createCliLogger({ level: 'info', format: 'json', terminal: new Terminal(stream) });
    logger.info({ stage: 'responses', records: 3 }, 'batch done');
    logger.debug('not at this level');
    const lines = stream.text.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 30, stage: 'responses', records: 3, msg: 'batch done' });
  });

  it('writes readable lines in pretty mode: level, message and fields, no JSON object', () => {
    const stream = fakeStream(true);
    const logger = createCliLogger({ level: 'info', format: 'pretty', terminal: new Terminal(stream), colorize: false });
    logger.warn({ stage: 'responses' }, 'backend slow');
    const line = stream.text.trim();
    expect(line).toMatch(/^\[\d\d:\d\d:\d\d\] WARN: backend slow/);
    expect(line).toContain('"stage":"responses"');
    expect(() => JSON.parse(line)).toThrow();
  });
});

describe('terminal', () => {
  it('clears the live line for a log line and draws it again below', () => {
    const stream = fakeStream(true);
    const terminal = new Terminal(stream);
    terminal.setStatus('responses 3→3 0.5/s');
    terminal.log('a log line');
    terminal.setStatus('responses 4→4 0.6/s');
    terminal.endStatus();
    expect(stream.text).toBe(`${CLEAR}responses 3→3 0.5/s${CLEAR}a log line\nresponses 3→3 0.5/s${CLEAR}responses 4→4 0.6/s\n`);
  });

  it('cuts the live line to the terminal width so it never wraps', () => {
    const stream = fakeStream(true);
    stream.columns = 20;
    const terminal = new Terminal(stream);
    terminal.setStatus('x'.repeat(50));
    expect(stream.text).toBe(`${CLEAR}${'x'.repeat(18)}…`);
  });
});

describe('progress', () => {
  const counts = (metrics: StageMetrics) => {
    metrics.setSourceTarget('instructions', 100);
    metrics.record('instructions', { in: 0, out: 40, rejected: 2, deadLettered: 0 });
    // Dedupe writes each kept record to its output and to its changelog: only `out` is its flow.
    metrics.record('dedupe', { in: 40, out: 76, rejected: 0, deadLettered: 0, ports: { out: 38, changelog: 38 } });
  };

  it('on a terminal is one live line, redrawn in place and kept below log lines', () => {
    const stream = fakeStream(true);
    const terminal = new Terminal(stream);
    const metrics = new StageMetrics();
    counts(metrics);
    const logger = createCliLogger({ level: 'info', format: 'pretty', terminal, colorize: false });
    const progress = startProgress(metrics, ['dedupe', 'instructions'], { intervalMs: 10_000, logger, terminal });
    logger.info('a log line meanwhile');
    progress.stop();
    const status = 'instructions 42/100 (42%) 40 out (2 rejected) 0.0/s | dedupe 40→38 0.0/s';
    // The log line is written on its own line; the final status is drawn after it and then finished with a newline.
    const [logPart, statusPart] = stream.text.split('\n');
    expect(logPart).toMatch(/INFO: a log line meanwhile$/);
    expect(statusPart).toBe(`${CLEAR}${status}`);
    expect(stream.text.endsWith('\n')).toBe(true);
    expect(stream.text).not.toContain('progress:');
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('shows rates over the window and an ETA for a source with a count', () => {
    vi.useFakeTimers({ now: 0 });
    const stream = fakeStream(true);
    const terminal = new Terminal(stream);
    const metrics = new StageMetrics();
    metrics.setSourceTarget('instructions', 100);
    const logger = createCliLogger({ level: 'info', format: 'pretty', terminal, colorize: false });
    const progress = startProgress(metrics, ['instructions'], { intervalMs: 10_000, logger, terminal, windowMs: 30_000 });
    metrics.record('instructions', { in: 0, out: 8, rejected: 2, deadLettered: 0 });
    vi.advanceTimersByTime(10_000);
    progress.stop();
    // 10 handled in 10 s: 1.0/s, 90 to go.
    expect(stream.text.split(CLEAR).at(-1)).toBe('instructions 10/100 (10%) 8 out (2 rejected) 1.0/s | ETA 1m30s\n');
  });

  it('when piped is a JSON log line with every stage\'s counts and ports', () => {
    const stream = fakeStream(false);
    const terminal = new Terminal(stream);
    const metrics = new StageMetrics();
    counts(metrics);
    const logger = createCliLogger({ level: 'info', format: 'json', terminal });
    startProgress(metrics, ['dedupe', 'instructions'], { intervalMs: 10_000, logger, terminal }).stop();
    const line = JSON.parse(stream.text.trim()) as { msg: string; stages: Record<string, { in: number; out: number; ports: Record<string, number> }> };
    expect(line.msg).toBe('progress: instructions 42/100 (42%) 40 out (2 rejected) 0.0/s | dedupe 40→38 0.0/s');
    expect(line.stages.dedupe).toMatchObject({ in: 40, out: 38, ports: { out: 38, changelog: 38 } });
    expect(stream.text).not.toContain(CLEAR);
  });
});
