import { pino } from 'pino';
import { afterEach, inject } from 'vitest';
import type { RunningTopology } from '../../src/topology/build.js';

/** What an integration test that runs topologies needs: a quiet logger, the broker, and cleanup after each test. */
export function topologyTestContext() {
  const running: RunningTopology[] = [];
  afterEach(async () => {
    await Promise.allSettled(running.splice(0).map((r) => r.stop(0)));
  });
  return {
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' }),
    bootstrap: inject('kafkaBootstrap'),
    /** Stops the topology after the current test. */
    track: (run: RunningTopology): RunningTopology => (running.push(run), run),
  };
}
