import type { Kafka } from 'kafkajs';
import { MagpieError, errorMessage } from '../core/errors.js';
import { describeRule, type AclResourceType, type AclRule } from './acls.js';

/**
 * What a broker refusal means, read from a kafkajs error (or one it wraps): not authorised for a kind of
 * resource, authentication failed, or TLS could not be set up.
 */
export type AccessFailure =
  /**
   * `inferred`: the broker did not say so; a coordinator lookup failed where a grant is needed. A broker that
   * is restarting or electing a coordinator fails the same way, so this never stops a stage on its own.
   */
  | { kind: 'not-authorized'; resourceType: AclResourceType; inferred?: boolean }
  | { kind: 'authentication' }
  | { kind: 'tls'; reason: string }
  | { kind: 'closed-at-connect' };

const NOT_AUTHORIZED: Record<string, AclResourceType> = {
  TOPIC_AUTHORIZATION_FAILED: 'TOPIC',
  GROUP_AUTHORIZATION_FAILED: 'GROUP',
  CLUSTER_AUTHORIZATION_FAILED: 'CLUSTER',
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 'TRANSACTIONAL_ID',
};

/** Node's codes for a certificate the client does not trust or cannot use. */
const TLS_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE', 'ERR_SSL_WRONG_VERSION_NUMBER', 'EPROTO',
]);

/** The error and every error it wraps (kafkajs nests them in cause, originalError and aggregates). */
function* chain(err: unknown, depth = 0): Generator<Record<string, unknown>> {
  if (!err || typeof err !== 'object' || depth > 6) return;
  const e = err as Record<string, unknown>;
  yield e;
  yield* chain(e['cause'], depth + 1);
  yield* chain(e['originalError'], depth + 1);
  if (Array.isArray(e['errors'])) for (const inner of e['errors']) yield* chain(inner, depth + 1);
}

export function classifyAccessFailure(err: unknown): AccessFailure | undefined {
  let closed = false;
  for (const e of chain(err)) {
    if (e instanceof KafkaAccessError) return e.failure;
    const type = typeof e['type'] === 'string' ? e['type'] : '';
    if (NOT_AUTHORIZED[type]) return { kind: 'not-authorized', resourceType: NOT_AUTHORIZED[type] };
    if (type === 'SASL_AUTHENTICATION_FAILED' || e['name'] === 'KafkaJSSASLAuthenticationError') return { kind: 'authentication' };
    const code = typeof e['code'] === 'string' ? e['code'] : '';
    if (TLS_CODES.has(code)) return { kind: 'tls', reason: errorMessage(e).replace(/^Connection error: /, '') };
    if (e['name'] === 'KafkaJSConnectionClosedError' || /^Closed connection/.test(String(e['message'] ?? ''))) closed = true;
  }
  return closed ? { kind: 'closed-at-connect' } : undefined;
}

export type AccessErrorCode = 'KAFKA_NOT_AUTHORIZED' | 'KAFKA_AUTHENTICATION_FAILED' | 'KAFKA_TLS_FAILED' | 'KAFKA_CONNECTION_REFUSED';

/** A broker refused this client: the message names the principal, the resource and the ACL that is missing. */
export class KafkaAccessError extends MagpieError {
  constructor(
    code: AccessErrorCode,
    message: string,
    readonly failure: AccessFailure,
    /** The ACLs of which at least one is missing (the exact one when it could be told). */
    readonly missing: readonly AclRule[],
    cause: unknown,
  ) {
    // Retryable: a missing grant is never the record's fault, so no record is dead-lettered for it; whether the
    // stage waits for the grant or stops is the caller's choice (kafka.onAccessDenied).
    super(code, message, { cause, retryable: true, details: { missing: missing.map(describeRule) } });
  }
}

/**
 * A refusal read from symptoms a broker that dies or restarts shows as well (a coordinator lookup that fails, a
 * connection closed at once): certain at start-up, when nothing has worked yet; only likely once running.
 */
export function isInferredRefusal(err: KafkaAccessError): boolean {
  return err.failure.kind === 'closed-at-connect' || (err.failure.kind === 'not-authorized' && err.failure.inferred === true);
}

/** Who is connecting and what it is meant to be allowed: the context a refusal is explained in. */
export interface AccessContext {
  /** e.g. `User:respond`; for messages. */
  readonly principal: string;
  /** Stage (or component) name, for messages. */
  readonly component: string;
  /** The ACLs `magpie acls` generates for it. */
  readonly rules: readonly AclRule[];
  /** Whether the client was configured for TLS / SASL, for connection-level hints. */
  readonly tls: boolean;
  readonly sasl: { mechanism: string; username: string } | undefined;
}

/** Resource names and the operation of the call that failed, when the caller knows them. */
export interface FailedCall {
  readonly operation?: 'READ' | 'WRITE';
  readonly names?: readonly string[];
  /**
   * The coordinator the call needed: a transactional producer's or a consumer group's. kafkajs reports a
   * coordinator lookup the broker refused (no grant on the transactional id or group) only as "failed to
   * find group coordinator", the reason being in its log alone.
   */
  readonly coordinator?: 'TRANSACTIONAL_ID' | 'GROUP';
}

/** Asks the broker about the groups directly: DescribeGroups answers GROUP_AUTHORIZATION_FAILED in so many words. */
async function groupRefused(probe: Kafka, names: readonly string[]): Promise<boolean> {
  if (names.length === 0) return false;
  const admin = probe.admin();
  try {
    await admin.connect();
    const { groups } = await admin.describeGroups([...names]);
    return groups.some((g) => (g as { errorCode?: number }).errorCode === 30);
  } catch (err) {
    return [...chain(err)].some((e) => e['type'] === 'GROUP_AUTHORIZATION_FAILED' || e['code'] === 30);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function coordinatorRefused(err: unknown, call: FailedCall): AccessFailure | undefined {
  if (!call.coordinator) return undefined;
  for (const e of chain(err)) if (e['name'] === 'KafkaJSGroupCoordinatorNotFound') return { kind: 'not-authorized', resourceType: call.coordinator, inferred: true };
  return undefined;
}

function matches(rule: AclRule, name: string): boolean {
  return rule.patternType === 'PREFIXED' ? name.startsWith(rule.resourceName) : name === rule.resourceName;
}

/**
 * Narrows the candidate ACLs to the one missing: first by the resources and operation of the failed call, then,
 * for topics, by asking the broker which of them this principal cannot even see (DESCRIBE comes only with READ
 * or WRITE, which is all a stage is granted, so a topic whose only grant is missing disappears from its view).
 */
async function missingRules(failure: Extract<AccessFailure, { kind: 'not-authorized' }>, ctx: AccessContext, call: FailedCall, probe: Kafka | undefined): Promise<AclRule[]> {
  let candidates = ctx.rules.filter((r) => r.resourceType === failure.resourceType);
  const named = candidates.filter((r) => call.names?.some((n) => matches(r, n)));
  // The call named resources, none of them granted: it reached outside the stage's set, nothing is missing.
  if (named.length === 0 && call.names?.length && failure.resourceType !== 'CLUSTER') return [];
  if (named.length > 0) candidates = named;
  const byOp = candidates.filter((r) => r.operation === call.operation);
  if (byOp.length > 0) candidates = byOp;
  if (failure.resourceType !== 'TOPIC' || candidates.length <= 1 || !probe) return candidates;
  const topics = [...new Set(candidates.map((r) => r.resourceName))];
  const hidden = new Set<string>();
  const admin = probe.admin();
  try {
    await admin.connect();
    for (const topic of topics) {
      await admin.fetchTopicMetadata({ topics: [topic] }).catch((err: unknown) => {
        const f = classifyAccessFailure(err);
        if (f?.kind === 'not-authorized') hidden.add(topic);
      });
    }
  } catch {
    return candidates;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const found = candidates.filter((r) => hidden.has(r.resourceName));
  return found.length > 0 ? found : candidates;
}

/**
 * Turns a broker refusal into one KafkaAccessError that says what is missing and what to do; returns
 * undefined for any other error. `probe` (a client of the same principal) lets it tell which topic is meant.
 */
export async function explainAccessFailure(err: unknown, ctx: AccessContext, call: FailedCall = {}, probe?: Kafka): Promise<KafkaAccessError | undefined> {
  if (err instanceof KafkaAccessError) return err;
  let failure = classifyAccessFailure(err) ?? coordinatorRefused(err, call);
  if (!failure) return undefined;
  if (failure.kind === 'not-authorized' && failure.inferred && failure.resourceType === 'GROUP' && probe && (await groupRefused(probe, call.names ?? []))) {
    failure = { kind: 'not-authorized', resourceType: 'GROUP' };
  }
  const who = `${ctx.component} (${ctx.principal})`;
  switch (failure.kind) {
    case 'authentication': {
      const how = ctx.sasl ? `${ctx.sasl.mechanism.toUpperCase()} as user '${ctx.sasl.username}'` : 'SASL';
      return new KafkaAccessError('KAFKA_AUTHENTICATION_FAILED', `${who}: the broker refused authentication (${how}): check the user and its password (kafka.sasl.passwordFile / passwordEnv)`, failure, [], err);
    }
    case 'tls':
      return new KafkaAccessError(
        'KAFKA_TLS_FAILED',
        `${who}: TLS with the broker failed (${failure.reason}): set kafka.ssl.caFile to the CA that signed the broker's certificate, and check that it has not expired`,
        failure,
        [],
        err,
      );
    case 'closed-at-connect':
      // A plaintext client on a TLS listener sees the broker hang up; with TLS on, it is a plain network error.
      if (ctx.tls) return undefined;
      return new KafkaAccessError(
        'KAFKA_CONNECTION_REFUSED',
        `${who}: the broker closed the connection at once: if its listener uses TLS (SSL or SASL_SSL), set kafka.ssl (and kafka.sasl)`,
        failure,
        [],
        err,
      );
    case 'not-authorized': {
      const missing = await missingRules(failure, ctx, call, probe);
      const what =
        missing.length === 1
          ? `missing ACL: ${describeRule(missing[0]!)} (${missing[0]!.reason})`
          : missing.length > 1
            ? `one of these ACLs is missing: ${missing.map((r) => `${describeRule(r)} (${r.reason})`).join('; ')}`
            : failure.resourceType === 'CLUSTER'
              ? 'the operation needs a cluster permission no stage is granted (topics are created beforehand by an administrator: magpie topics create)'
              : `${ctx.component} has no ACL on that ${failure.resourceType} (${call.names?.join(', ') ?? 'unnamed'}): it is outside what magpie acls grants it`;
      return new KafkaAccessError(
        'KAFKA_NOT_AUTHORIZED',
        `${who}${failure.inferred ? ' cannot find the coordinator it needs: unless the broker is restarting, it' : ''} is not authorised on ${failure.resourceType}${missing.length === 1 && missing[0]!.resourceType !== 'CLUSTER' ? ` '${missing[0]!.resourceName}'` : ''}: ${what}${missing.length > 0 ? '; grant it with magpie acls <topology> --apply' : ''}`,
        failure,
        missing,
        err,
      );
    }
  }
}
