import { MagpieError } from '../core/errors.js';
import { reachable } from '../core/reachable.js';

/** What a person does when no broker answers: start the local one, or point at a running one. */
export const START_BROKER_HINT =
  'start one (in a magpie-stream checkout: bash scripts/kafka.sh start, which prints the address) and pass its address with --brokers or KAFKA_BROKERS';

function reach(broker: string, timeoutMs: number): Promise<void> {
  const at = broker.lastIndexOf(':');
  return reachable(at > 0 ? broker.slice(0, at).replace(/^\[|\]$/g, '') : broker, at > 0 ? Number(broker.slice(at + 1)) : 9092, timeoutMs);
}

/**
 * Fails fast with KAFKA_UNREACHABLE when not one bootstrap broker accepts a TCP connection, instead of the
 * Kafka client retrying for half a minute and ending in a stack trace. TLS and SASL are left to the client.
 */
export async function probeBrokers(brokers: readonly string[], timeoutMs = 3_000): Promise<void> {
  const results = await Promise.allSettled(brokers.map((b) => reach(b, timeoutMs)));
  if (results.some((r) => r.status === 'fulfilled')) return;
  const reasons = results.map((r, i) => `${brokers[i]}: ${r.status === 'rejected' ? (r.reason as Error).message : ''}`);
  throw new MagpieError('KAFKA_UNREACHABLE', `cannot reach Kafka (${reasons.join(', ')}): ${START_BROKER_HINT}`, { details: { brokers } });
}
