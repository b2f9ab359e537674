import { MagpieError } from '../core/errors.js';
import { START_BROKER_HINT } from '../kafka/probe.js';

/** One line for a person: what failed and what to do; `known` when the line says all there is to say. */
export interface Failure {
  message: string;
  code: string | undefined;
  known: boolean;
}

interface KafkaJsLike {
  name?: string;
  type?: string;
  broker?: string;
  message?: string;
  cause?: unknown;
  originalError?: unknown;
}

/** The error and what it wraps, outermost first (kafkajs nests the real failure in `cause`/`originalError`). */
function chain(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e: unknown = err; e && typeof e === 'object' && out.length < 8 && !out.includes(e); ) {
    out.push(e);
    const k = e as KafkaJsLike;
    e = k.cause ?? k.originalError;
  }
  return out;
}

/** Recognizes the failures a new user meets first and says what to do about each; anything else as it is. */
export function describeFailure(err: unknown): Failure {
  if (err instanceof MagpieError) return { message: err.message, code: err.code, known: true };
  const errors = chain(err) as KafkaJsLike[];
  const connection = errors.find((e) => e.name === 'KafkaJSConnectionError' || e.name === 'KafkaJSConnectionClosedError' || e.name === 'KafkaJSBrokerNotFound' || e.name === 'KafkaJSNoBrokerAvailableError');
  if (connection) {
    return { message: `lost or could not open the connection to Kafka${connection.broker ? ` at ${connection.broker}` : ''} (${connection.message}): is the broker running? ${START_BROKER_HINT}`, code: 'KAFKA_UNREACHABLE', known: true };
  }
  if (errors.some((e) => e.type === 'UNKNOWN_TOPIC_OR_PARTITION')) {
    return { message: 'a topic does not exist: check the name (and --prefix), or create the topology\'s topics with: magpie topics create <topology.yaml>', code: 'KAFKA_UNKNOWN_TOPIC', known: true };
  }
  const first = errors[0];
  return { message: first?.message ?? String(err), code: undefined, known: false };
}
