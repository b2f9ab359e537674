import type { Admin } from 'kafkajs';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/retry.js';
import { groupOffsets, lagOf } from './consumer-lag.js';

export interface BacklogBound {
  /** The topic the source writes. */
  topic: string;
  /** Consumer groups of the stages that read it. */
  groups: readonly string[];
  /** Records not yet committed by the slowest of those groups, above which the source waits. */
  max: number;
}

/** How often the backlog is read while the source waits, and how long a reading is trusted while it runs. */
const POLL_MS = 500;

/**
 * Backpressure for a source across processes: its readers' consumer lag, read from the broker, bounds how far
 * it runs ahead of them. A feed left running for weeks never piles up instructions nobody answers, and stages
 * run by other processes throttle it as well as those in this one. The lag counts transaction markers (one
 * per committed batch), so the bound holds to within a few percent.
 */
export class BacklogGate {
  private reading: { at: number; lag: number } | undefined;
  /** Records the source wrote since the last reading: the backlog is read again before they could pass the bound. */
  private written = 0;
  private waiting = false;

  constructor(
    private readonly admin: () => Promise<Admin>,
    private readonly bound: BacklogBound,
    private readonly log: Logger,
  ) {}

  /**
   * The largest backlog among the reading groups that have committed on the topic. A group that never has (its
   * stage not deployed yet, or run later on purpose to replay what the source made) holds nothing back.
   */
  async backlog(): Promise<number> {
    const admin = await this.admin();
    const ends = await admin.fetchTopicOffsets(this.bound.topic);
    let worst = 0;
    for (const groupId of this.bound.groups) {
      const committed = await groupOffsets(admin, groupId, this.bound.topic);
      if (committed.size === 0) continue;
      let sum = 0;
      for (const lag of lagOf(ends, committed).values()) sum += lag;
      worst = Math.max(worst, sum);
    }
    return worst;
  }

  /** The source wrote `offsets` more (records, and transaction markers). */
  wrote(offsets: number): void {
    this.written += offsets;
  }

  /** Resolves once the backlog is under the bound; a backlog that cannot be read lets the source go on. */
  async wait(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const now = Date.now();
      if (!this.reading || now - this.reading.at >= POLL_MS || this.reading.lag + this.written >= this.bound.max) {
        try {
          this.reading = { at: now, lag: await this.backlog() };
          this.written = 0;
        } catch (err) {
          // Throttling is an optimisation: an unreadable lag must not stop a feed.
          this.log.debug({ err: errorMessage(err) }, 'cannot read the backlog of the source output');
          return;
        }
      }
      if (this.reading.lag < this.bound.max) {
        if (this.waiting) this.log.info({ backlog: this.reading.lag, max: this.bound.max }, 'backlog under its bound; source resumed');
        this.waiting = false;
        return;
      }
      if (!this.waiting) this.log.info({ backlog: this.reading.lag, max: this.bound.max, topic: this.bound.topic }, 'readers are behind; source waits until the backlog is under its bound');
      this.waiting = true;
      await sleep(POLL_MS, signal).catch(() => undefined);
    }
  }
}
