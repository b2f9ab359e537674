import { KafkaJSConnectionError, KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConfigError, InferenceError } from '../../../src/core/errors.js';
import { describeFailure } from '../../../src/cli/failures.js';
import { probeBrokers } from '../../../src/kafka/probe.js';
import { probeSchemaRegistry } from '../../../src/serde/registry-probe.js';

describe('failures a person can act on', () => {
  it('a broker that cannot be reached, however deep kafkajs wraps it, says to start one', () => {
    const refused = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092', { broker: '127.0.0.1:9092', code: 'ECONNREFUSED' });
    // As kafkajs' retry wraps the last failure once retries run out.
    const exceeded = new KafkaJSNumberOfRetriesExceeded(refused, { retryCount: 5, retryTime: 30_000 });
    // (kafkajs' type definitions omit the second argument its constructor takes.)
    const wrapped = new (KafkaJSNonRetriableError as unknown as new (e: Error, o: { cause: Error }) => Error)(exceeded, { cause: exceeded });
    const f = describeFailure(wrapped);
    expect(f).toMatchObject({ code: 'KAFKA_UNREACHABLE', known: true });
    expect(f.message).toContain('127.0.0.1:9092');
    expect(f.message).toContain('scripts/kafka.sh start');
  });

  it('a missing topic says how to create the topology\'s topics', () => {
    const f = describeFailure(new KafkaJSProtocolError(Object.assign(new Error('This server does not host this topic-partition'), { type: 'UNKNOWN_TOPIC_OR_PARTITION', code: 3, retriable: true })));
    expect(f).toMatchObject({ code: 'KAFKA_UNKNOWN_TOPIC', known: true });
    expect(f.message).toContain('magpie topics create');
  });

  it('our own errors keep their message and code; others are marked for --verbose', () => {
    const model = new InferenceError('INFERENCE_UNAVAILABLE', 'GGUF model not found at /x.gguf; run scripts/fetch-models.sh or set modelPath');
    expect(describeFailure(model)).toEqual({ message: model.message, code: 'INFERENCE_UNAVAILABLE', known: true });
    expect(describeFailure(new ConfigError('stages[0].x: bad'))).toMatchObject({ code: 'CONFIG_INVALID', known: true });
    expect(describeFailure(new TypeError('boom'))).toEqual({ message: 'boom', code: undefined, known: false });
  });
});

describe('broker probe', () => {
  it('passes when one bootstrap broker accepts connections', async () => {
    const server = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      await expect(probeBrokers(['127.0.0.1:9', `127.0.0.1:${port}`])).resolves.toBeUndefined();
    } finally {
      server.close();
    }
  });

  it('fails with KAFKA_UNREACHABLE naming every broker and why', async () => {
    const err = await probeBrokers(['127.0.0.1:9']).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'KAFKA_UNREACHABLE' });
    expect((err as Error).message).toContain('127.0.0.1:9: ECONNREFUSED');
  });
});

describe('schema registry probe', () => {
  it('fails with one line naming the registry, without the credentials of its URL', async () => {
    const err = await probeSchemaRegistry('http://user:s3cret@127.0.0.1:9/').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SERDE_REGISTRY_UNREACHABLE' });
    expect((err as Error).message).toBe('the schema registry at http://127.0.0.1:9 is not answering (ECONNREFUSED): start it, or fix serde.registry.url in the topology');
  });
});
