import type { Kafka } from 'kafkajs';
import type { Logger } from '../core/logger.js';
import { explainAccessFailure, type AccessContext, type FailedCall, type KafkaAccessError } from './auth-errors.js';

export interface AccessGuardOptions {
  readonly context: AccessContext;
  readonly logger: Logger;
  /** Called with every refusal, after it is explained (the caller decides to stop or wait). */
  readonly onDenied?: (err: KafkaAccessError) => void;
  /** How often the same refusal is logged again while it lasts. Default 60 s. */
  readonly relogMs?: number;
}

/** Every string in a call's arguments (topics, group and transactional ids), a few levels deep. */
function namesIn(value: unknown, out: string[] = [], depth = 0): string[] {
  if (typeof value === 'string') out.push(value);
  else if (value && typeof value === 'object' && depth < 4 && !Buffer.isBuffer(value)) {
    for (const [key, v] of Object.entries(value)) if (key !== 'value' && key !== 'headers') namesIn(v, out, depth + 1);
  }
  return out;
}

/**
 * The client a stage (or the serde, or the CLI) uses, with every refusal by the broker turned into one
 * KafkaAccessError naming the principal, the resource and the missing ACL, logged once (not once per retry)
 * and handed to `onDenied`. Other errors, and every result, pass through unchanged, so the runners need no
 * knowledge of security: they retry (wait) as for any failed chunk, or are stopped by `onDenied`.
 */
export function guardAccess(kafka: Kafka, options: AccessGuardOptions): Kafka {
  const lastLogged = new Map<string, number>();
  const relogMs = options.relogMs ?? 60_000;
  // A plaintext client on a TLS listener never gets an answer; once one came, a connection the broker closes is
  // the network or a broker going down, not a listener this client cannot speak to.
  let answered = false;
  const translate = async (err: unknown, call: FailedCall): Promise<unknown> => {
    const explained = await explainAccessFailure(err, options.context, call, kafka).catch(() => undefined);
    if (!explained || (answered && explained.failure.kind === 'closed-at-connect')) return err;
    const now = Date.now();
    if (now - (lastLogged.get(explained.message) ?? -Infinity) >= relogMs) {
      lastLogged.set(explained.message, now);
      options.logger.error({ component: options.context.component, code: explained.code, missing: explained.details?.['missing'] }, explained.message);
    }
    options.onDenied?.(explained);
    return explained;
  };

  type Wrapped = Record<string | symbol, unknown>;
  const wrap = <T extends object>(target: T, operation: FailedCall['operation'], own: readonly string[], coordinator?: FailedCall['coordinator']): T =>
    new Proxy(target, {
      get(t, prop) {
        const value = Reflect.get(t, prop, t) as unknown;
        if (typeof value !== 'function') return value;
        const fn = value as (...args: unknown[]) => unknown;
        if (prop === 'on') {
          // A consumer reports its crash (e.g. refused by the group) through CRASH: explain it there too.
          return (event: string, listener: (e: { payload: { error: unknown } }) => void) =>
            fn.call(t, event, event === (t as Wrapped & { events?: { CRASH?: string } }).events?.CRASH
              ? (e: { payload: { error: unknown } }) => void translate(e.payload.error, { operation: 'READ', names: own, coordinator }).then((error) => listener({ ...e, payload: { ...e.payload, error } }))
              : listener);
        }
        return (...args: unknown[]) => {
          const result = fn.apply(t, args);
          if (!(result instanceof Promise)) return result;
          // Offsets (sendOffsets, an admin's fetchOffsets) go to the group's coordinator.
          const needs = prop === 'sendOffsets' || typeof (args[0] as { groupId?: unknown } | undefined)?.groupId === 'string' ? 'GROUP' : coordinator;
          const call: FailedCall = { operation: prop === 'sendOffsets' ? 'READ' : operation, names: [...own, ...namesIn(args)], ...(needs ? { coordinator: needs } : {}) };
          return result.then(
            (v: unknown) => {
              answered = true;
              return prop === 'transaction' && v && typeof v === 'object' ? wrap(v, operation, own, coordinator) : v;
            },
            async (err: unknown) => {
              throw await translate(err, call);
            },
          );
        };
      },
    });

  return new Proxy(kafka, {
    get(t, prop) {
      if (prop === 'producer') {
        return (config?: { transactionalId?: string }) =>
          config?.transactionalId ? wrap(t.producer(config), 'WRITE', [config.transactionalId], 'TRANSACTIONAL_ID') : wrap(t.producer(config), 'WRITE', []);
      }
      if (prop === 'consumer') {
        return (config: { groupId: string }) => {
          const consumer = t.consumer(config as Parameters<Kafka['consumer']>[0]);
          return wrap(consumer, 'READ', [config.groupId], 'GROUP');
        };
      }
      if (prop === 'admin') return (config?: Parameters<Kafka['admin']>[0]) => wrap(t.admin(config), undefined, []);
      return Reflect.get(t, prop, t) as unknown;
    },
  });
}
