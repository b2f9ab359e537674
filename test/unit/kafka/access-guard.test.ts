import type { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { guardAccess } from '../../../src/kafka/access-guard.js';
import { KafkaAccessError } from '../../../src/kafka/auth-errors.js';
import { silent } from './fakes.js';

const closed = () => Object.assign(new Error('Closed connection'), { name: 'KafkaJSConnectionClosedError' });

/** A Kafka whose admin answers each fetchOffsets call as scripted: a value, or an error thrown. */
function scripted(...answers: unknown[]): Kafka {
  const admin = {
    fetchOffsets: async () => {
      const next = answers.shift();
      if (next instanceof Error) throw next;
      return next;
    },
  };
  return { admin: () => admin } as unknown as Kafka;
}

const context = { principal: 'User:ANONYMOUS', component: 'stage copy', rules: [], tls: false, sasl: undefined };

describe('guardAccess', () => {
  it('explains a connection closed before any answer as a likely TLS listener', async () => {
    const admin = guardAccess(scripted(closed()), { context, logger: silent }).admin();
    const err = await admin.fetchOffsets({ groupId: 'g', topics: ['t'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KafkaAccessError);
    expect((err as Error).message).toMatch(/closed the connection at once.*kafka\.ssl/);
  });

  it('passes a connection closed after the broker has answered through as the network error it is (a broker going down)', async () => {
    const denied: unknown[] = [];
    const admin = guardAccess(scripted([{ topic: 't', partitions: [] }], closed()), { context, logger: silent, onDenied: (e) => denied.push(e) }).admin();
    await admin.fetchOffsets({ groupId: 'g', topics: ['t'] });
    const err = await admin.fetchOffsets({ groupId: 'g', topics: ['t'] }).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(KafkaAccessError);
    expect((err as Error).name).toBe('KafkaJSConnectionClosedError');
    expect(denied).toEqual([]);
  });
});
