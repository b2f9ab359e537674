/**
 * MAGPIE_TRACE_WINDOWS=1: where a stage's partitions wait. Counts fetches (and those begun with every partition
 * paused, which kafkajs spends asleep for maxWaitTimeInMs), time paused per partition, the time from a resume
 * to the partition's next batch, commits (count, time, records each) and the share of 5 ms samples in which a
 * window had nothing to work on; written to stderr when the stage stops. Off, it costs nothing.
 */
export class WindowTrace {
  static readonly enabled = !!process.env.MAGPIE_TRACE_WINDOWS;
  private readonly t0 = performance.now();
  private readonly cpu0 = process.cpuUsage();
  private fetches = 0;
  private fetchMs = 0;
  private asleep = 0;
  private asleepMs = 0;
  private fetchStart = 0;
  private fetchAsleep = false;
  private samples = 0;
  private readonly parts = new Map<number, PartitionTrace>();
  private readonly sampler: NodeJS.Timeout;

  constructor(
    windows: ReadonlyMap<number, { buffered: number; working: number }>,
    private readonly allPaused: () => boolean,
  ) {
    this.sampler = setInterval(() => {
      if (windows.size === 0) return;
      this.samples++;
      for (const [p, w] of windows) if (w.buffered === 0 && w.working === 0) this.part(p).noWork++;
    }, 5);
    this.sampler.unref();
  }

  private part(p: number): PartitionTrace {
    let s = this.parts.get(p);
    if (!s) this.parts.set(p, (s = { batches: 0, records: 0, pausedMs: 0, pauses: 0, resumeToBatch: [], commits: 0, commitMs: 0, commitTimes: [], committed: 0, noWork: 0 }));
    return s;
  }

  fetchBegin(): void {
    this.fetchStart = performance.now();
    this.fetchAsleep = this.allPaused();
  }

  fetchEnd(): void {
    const ms = performance.now() - this.fetchStart;
    this.fetches++;
    this.fetchMs += ms;
    if (this.fetchAsleep) {
      this.asleep++;
      this.asleepMs += ms;
    }
  }

  batch(p: number, records: number): void {
    const s = this.part(p);
    s.batches++;
    s.records += records;
    if (s.resumedAt !== undefined) s.resumeToBatch.push(performance.now() - s.resumedAt);
    s.resumedAt = undefined;
  }

  pause(p: number, paused: boolean): void {
    const s = this.part(p);
    const now = performance.now();
    if (paused) {
      s.pausedAt = now;
      s.pauses++;
    } else if (s.pausedAt !== undefined) {
      s.pausedMs += now - s.pausedAt;
      s.pausedAt = undefined;
      s.resumedAt = now;
    }
  }

  commitBegin(p: number): void {
    this.part(p).commitStart = performance.now();
  }

  commitEnd(p: number, records: number): void {
    const s = this.part(p);
    s.commits++;
    s.committed += records;
    const ms = performance.now() - (s.commitStart ?? performance.now());
    s.commitMs += ms;
    s.commitTimes.push(ms);
  }

  report(): string {
    clearInterval(this.sampler);
    const wall = performance.now() - this.t0;
    const cpu = process.cpuUsage(this.cpu0);
    const lines = [
      `window trace: ${wall.toFixed(0)} ms, process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms; fetches ${this.fetches} (${this.fetchMs.toFixed(0)} ms), of which begun with every partition paused ${this.asleep} (${this.asleepMs.toFixed(0)} ms)`,
    ];
    for (const [p, s] of [...this.parts].sort((a, b) => a[0] - b[0])) {
      const r = s.resumeToBatch;
      const mean = r.length ? r.reduce((a, b) => a + b, 0) / r.length : 0;
      const commits = Math.max(1, s.commits);
      const sorted = [...s.commitTimes].sort((a, b) => a - b);
      const q = (f: number) => (sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))] ?? 0).toFixed(0);
      lines.push(
        `  partition ${p}: ${s.batches} batches (${s.records} records); paused ${s.pauses}× for ${s.pausedMs.toFixed(0)} ms, resume → next batch mean ${mean.toFixed(0)} ms, max ${Math.max(0, ...r).toFixed(0)} ms; ` +
          `${s.commits} commits of ${(s.committed / commits).toFixed(0)} records, ${(s.commitMs / commits).toFixed(1)} ms each (median ${q(0.5)}, p90 ${q(0.9)}, max ${q(1)}; ${s.commitMs.toFixed(0)} ms in all); no work in ${((100 * s.noWork) / Math.max(1, this.samples)).toFixed(0)}% of samples`,
      );
    }
    return lines.join('\n');
  }
}

interface PartitionTrace {
  batches: number;
  records: number;
  pausedAt?: number;
  pausedMs: number;
  pauses: number;
  resumedAt?: number;
  resumeToBatch: number[];
  commits: number;
  commitMs: number;
  commitTimes: number[];
  committed: number;
  commitStart?: number;
  noWork: number;
}
