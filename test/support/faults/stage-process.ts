/**
 * A `magpie run` child process, as a user starts it, for fault-injection tests: its JSON log lines are kept
 * (and copied to a file under .magpie/faults/), it can be killed with any signal, frozen and resumed, and its
 * resident memory sampled from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { PROJECT_ROOT } from '../broker.js';

export interface StageProcessOptions {
  topology: string;
  brokers: string;
  prefix: string;
  /** Only these stages (`--stage`). */
  stages?: string[];
  /** Extra environment (topology interpolation). */
  env?: Record<string, string>;
  /** Extra `run` flags, e.g. ['--exit-when-done']. */
  args?: string[];
  /** Names the log file; default the prefix. */
  label?: string;
  logLevel?: string;
}

export interface LogLine {
  level: number;
  msg: string;
  time: number;
  [field: string]: unknown;
}

const MAX_LINES = 20_000;

export class StageProcess {
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Parsed log lines, oldest first (the last MAX_LINES). */
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly listeners = new Set<(line: LogLine) => void>();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(readonly options: StageProcessOptions) {
    const dir = path.join(process.env.MAGPIE_RUN_DIR ?? path.join(PROJECT_ROOT, '.magpie'), 'faults');
    mkdirSync(dir, { recursive: true });
    this.logFile = path.join(dir, `${options.label ?? options.prefix}-${Date.now()}.log`);
    const file = createWriteStream(this.logFile);
    // The sources through tsx, as `npm run magpie` does: no build step between an edit and a test run.
    const args = [
      '--import', 'tsx',
      path.join(PROJECT_ROOT, 'src', 'cli', 'main.ts'),
      '--brokers', options.brokers,
      '--prefix', options.prefix,
      '--log-level', options.logLevel ?? 'info',
      'run', options.topology,
      '--progress-interval', '5',
      ...(options.stages ?? []).flatMap((s) => ['--stage', s]),
      ...(options.args ?? []),
    ];
    this.child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [this.child.stdout!, this.child.stderr!]) {
      stream.pipe(file, { end: false });
      createInterface({ input: stream }).on('line', (text) => this.onLine(text));
    }
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        file.end();
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  private onLine(text: string): void {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { level: 50, msg: text, time: Date.now() };
    }
    this.lines.push(line);
    if (this.lines.length > MAX_LINES) this.lines.splice(0, this.lines.length - MAX_LINES);
    for (const l of this.listeners) l(line);
  }

  /** Resolves with the first log line (already logged or to come) that matches. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs = 60_000): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`no matching log line within ${timeoutMs} ms from pid ${this.pid} (log: ${this.logFile})`));
      }, timeoutMs);
      const check = (line: LogLine) => {
        if (!match(line)) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(line);
      };
      this.listeners.add(check);
      void this.exited.then(() => {
        if (!this.listeners.has(check)) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        reject(new Error(`pid ${this.pid} exited (${JSON.stringify(this.exitInfo)}) before the awaited log line (log: ${this.logFile})`));
      });
    });
  }

  /** Resolves once the stage has started (joined its group and logged 'stage started'). */
  started(timeoutMs = 90_000): Promise<LogLine> {
    return this.waitForLog((l) => l.msg === 'stage started', timeoutMs);
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, sig);
  }

  /** kill -9: no shutdown code runs. */
  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (!this.running) return;
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Resident set size now and its peak (VmHWM), in bytes, from /proc/PID/status. */
  memory(): { rss: number; peak: number } | undefined {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
      return { rss: kb('VmRSS'), peak: kb('VmHWM') };
    } catch {
      return undefined;
    }
  }

  /** Log lines at warn level or above, for a failure message. */
  problems(limit = 20): string {
    return this.lines
      .filter((l) => l.level >= 40)
      .slice(-limit)
      .map((l) => `${l.msg} ${JSON.stringify(Object.fromEntries(Object.entries(l).filter(([k]) => !['level', 'time', 'pid', 'hostname', 'name', 'msg'].includes(k))))}`)
      .join('\n');
  }
}
