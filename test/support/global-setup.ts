/**
 * vitest globalSetup for the integration project: provides `kafkaBootstrap` (read it with
 * `inject('kafkaBootstrap')`).
 *
 * - KAFKA_BROKERS set (e.g. "localhost:29092" from docker-compose, or a cluster started by hand with
 *   `scripts/kafka.sh start`): used as is, nothing is started.
 * - Otherwise a fresh 1-node broker named `test` (MAGPIE_TEST_BROKER overrides the name) is started from a
 *   clean run dir and stopped in teardown. Its logs stay in .magpie/kafka/test/node-1/server.log.
 */
import type { TestProject } from 'vitest/node';
import { startBroker } from './broker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBootstrap: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.KAFKA_BROKERS?.trim();
  if (external) {
    project.provide('kafkaBootstrap', external);
    return async () => {};
  }

  const name = process.env.MAGPIE_TEST_BROKER?.trim() || 'test';
  const t0 = Date.now();
  const broker = await startBroker({ name, nodes: 1, fresh: true });
  process.stderr.write(`[global-setup] Kafka broker '${name}' at ${broker.bootstrap} (ready in ${Date.now() - t0} ms)\n`);
  project.provide('kafkaBootstrap', broker.bootstrap);

  return async () => {
    await broker.stop();
  };
}
