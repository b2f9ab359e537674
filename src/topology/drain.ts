import { topicEndOffsets } from '../kafka/admin.js';
import { StageRunner } from '../kafka/stage-runner.js';
import { sleep } from '../core/retry.js';
import type { RunningTopology } from './build.js';

/**
 * Resolves once every source has finished and every processor stage of this process has handled its input
 * up to the end, twice in a row (a stage upstream may still be writing between two looks).
 */
export async function waitUntilDrained(running: RunningTopology, options: { pollMs?: number; signal?: AbortSignal } = {}): Promise<void> {
  await running.sourcesFinished();
  const stages = [...running.runners.entries()].filter((e): e is [string, StageRunner] => e[1] instanceof StageRunner);
  let streak = 0;
  while (streak < 2) {
    if (options.signal?.aborted) return;
    await sleep(options.pollMs ?? 1_000, options.signal).catch(() => undefined);
    let all = true;
    for (const [, runner] of stages) {
      const ends = await topicEndOffsets(running.kafka, runner.input);
      if (!runner.caughtUp(ends)) {
        all = false;
        break;
      }
    }
    streak = all ? streak + 1 : 0;
  }
}
