/**
 * Broker refusals, as kafkajs reports them (the same error shapes the secured-broker integration test meets),
 * become one KafkaAccessError naming the principal, the resource and the missing ACL.
 */
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { classifyAccessFailure, explainAccessFailure, KafkaAccessError, type AccessContext } from '../../../src/kafka/auth-errors.js';
import { topologyAcls } from '../../../src/topology/acls.js';
import { parseTopology } from '../../../src/topology/load.js';

// The kafkajs error classes, as its runtime exports them (its typings leave some out or under-declare them).
const errors = kafkajs as unknown as Record<string, new (...args: unknown[]) => Error>;
const { KafkaJSProtocolError, KafkaJSNumberOfRetriesExceeded, KafkaJSSASLAuthenticationError, KafkaJSConnectionError, KafkaJSConnectionClosedError, KafkaJSGroupCoordinatorNotFound } = errors;

const protocol = (type: string) => new KafkaJSProtocolError!({ type, code: 0, retriable: false, message: `${type} from the broker` });

const topology = parseTopology(
  `name: demo\nkafka:\n  brokers: b:9093\n  ssl: true\n  sasl: { mechanism: scram-sha-512, username: shared, passwordEnv: X }\nstages:\n  - { name: copy, type: pass-through, input: in, output: out, principal: 'User:copy' }\n`,
  'demo.yaml',
);
const ctx: AccessContext = {
  principal: 'User:copy',
  component: 'stage copy',
  rules: topologyAcls(topology).flatMap((a) => a.rules),
  tls: true,
  sasl: { mechanism: 'scram-sha-512', username: 'copy' },
};

describe('classifying broker refusals', () => {
  it('reads the resource type of an authorisation failure, however deeply kafkajs wraps it', () => {
    expect(classifyAccessFailure(protocol('TOPIC_AUTHORIZATION_FAILED'))).toEqual({ kind: 'not-authorized', resourceType: 'TOPIC' });
    const wrapped = new KafkaJSNumberOfRetriesExceeded!(protocol('GROUP_AUTHORIZATION_FAILED'), { retryCount: 3, retryTime: 100 });
    expect(classifyAccessFailure(wrapped)).toEqual({ kind: 'not-authorized', resourceType: 'GROUP' });
    expect(classifyAccessFailure(protocol('TRANSACTIONAL_ID_AUTHORIZATION_FAILED'))).toEqual({ kind: 'not-authorized', resourceType: 'TRANSACTIONAL_ID' });
    expect(classifyAccessFailure(protocol('NOT_LEADER_FOR_PARTITION'))).toBeUndefined();
  });

  it('tells authentication, TLS trust and a hang-up at connect apart', () => {
    expect(classifyAccessFailure(new KafkaJSSASLAuthenticationError!('SASL SCRAM SHA512 authentication failed'))).toEqual({ kind: 'authentication' });
    const tls = new KafkaJSNumberOfRetriesExceeded!(new KafkaJSConnectionError!('Connection error: self-signed certificate in certificate chain', { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), { retryCount: 1, retryTime: 1 });
    expect(classifyAccessFailure(tls)).toEqual({ kind: 'tls', reason: 'self-signed certificate in certificate chain' });
    expect(classifyAccessFailure(new KafkaJSConnectionClosedError!('Closed connection', { host: 'b', port: 9093 }))).toEqual({ kind: 'closed-at-connect' });
  });
});

describe('explaining broker refusals', () => {
  it('names the one ACL the failed call needed', async () => {
    const err = await explainAccessFailure(protocol('TOPIC_AUTHORIZATION_FAILED'), ctx, { operation: 'WRITE', names: ['out'] });
    expect(err).toBeInstanceOf(KafkaAccessError);
    expect(err!.code).toBe('KAFKA_NOT_AUTHORIZED');
    expect(err!.retryable).toBe(true);
    expect(err!.message).toBe("stage copy (User:copy) is not authorised on TOPIC 'out': missing ACL: ALLOW User:copy WRITE on TOPIC 'out' (output topic); grant it with magpie acls <topology> --apply");
  });

  it("attributes a refused coordinator lookup to the call's transactional id or group", async () => {
    const txn = await explainAccessFailure(new KafkaJSGroupCoordinatorNotFound!('Failed to find group coordinator'), ctx, { coordinator: 'TRANSACTIONAL_ID', names: ['demo.copy-in-0'] });
    expect(txn!.message).toContain("missing ACL: ALLOW User:copy WRITE on TRANSACTIONAL_ID 'demo.copy-in-*' (prefixed)");
    const group = await explainAccessFailure(new KafkaJSGroupCoordinatorNotFound!('Failed to find group coordinator'), ctx, { coordinator: 'GROUP', operation: 'READ', names: ['demo.copy'] });
    expect(group!.message).toContain("missing ACL: ALLOW User:copy READ on GROUP 'demo.copy'");
    // Without a coordinator in the call it is no refusal: a plain network error stays what it is.
    expect(await explainAccessFailure(new KafkaJSGroupCoordinatorNotFound!('Failed to find group coordinator'), ctx, {})).toBeUndefined();
  });

  it('says when a call reached outside the stage’s set rather than inventing a missing grant', async () => {
    const err = await explainAccessFailure(protocol('TOPIC_AUTHORIZATION_FAILED'), ctx, { operation: 'WRITE', names: ['someone-elses-topic'] });
    expect(err!.missing).toEqual([]);
    expect(err!.message).toContain('stage copy has no ACL on that TOPIC (someone-elses-topic): it is outside what magpie acls grants it');
  });

  it('explains authentication, TLS and plaintext-on-TLS failures with what to check', async () => {
    const auth = await explainAccessFailure(new KafkaJSSASLAuthenticationError!('SASL SCRAM SHA512 authentication failed'), ctx);
    expect(auth!.code).toBe('KAFKA_AUTHENTICATION_FAILED');
    expect(auth!.message).toContain("refused authentication (SCRAM-SHA-512 as user 'copy')");
    const tls = await explainAccessFailure(new KafkaJSConnectionError!('Connection error: certificate has expired', { code: 'CERT_HAS_EXPIRED' }), ctx);
    expect(tls!.message).toContain('TLS with the broker failed (certificate has expired): set kafka.ssl.caFile');
    const closed = new KafkaJSConnectionClosedError!('Closed connection', { host: 'b', port: 9093 });
    expect(await explainAccessFailure(closed, ctx)).toBeUndefined();
    expect((await explainAccessFailure(closed, { ...ctx, tls: false }))!.code).toBe('KAFKA_CONNECTION_REFUSED');
  });
});
