import { sleep } from '../core/retry.js';
import { StageRunner } from '../kafka/stage-runner.js';
import type { RunningTopology } from './build.js';

/**
 * Resolves once every source has finished and every processor stage of this process has handled its input
 * up to the end, twice in a row (a stage upstream may still be writing between two looks). Rejects when a
 * source failed for good. One admin connection serves every look.
 */
export async function waitUntilDrained(running: RunningTopology, options: { pollMs?: number; signal?: AbortSignal } = {}): Promise<void> {
  await running.sourcesFinished();
  const stages = [...running.runners.values()].filter((r): r is StageRunner => r instanceof StageRunner);
  const admin = running.kafka.admin();
  await admin.connect();
  try {
    let streak = 0;
    while (streak < 2) {
      if (options.signal?.aborted) return;
      await sleep(options.pollMs ?? 1_000, options.signal).catch(() => undefined);
      let all = true;
      for (const runner of stages) {
        const offsets = await admin.fetchTopicOffsets(runner.input);
        const ends = new Map(offsets.map((o) => [o.partition, { low: BigInt(o.low), high: BigInt(o.high) }]));
        if (!runner.caughtUp(ends, await runner.committedOffsets(admin))) {
          all = false;
          break;
        }
      }
      streak = all ? streak + 1 : 0;
    }
  } finally {
    await admin.disconnect();
  }
}
