import { z } from 'zod';

const topicName = z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, 'a Kafka topic name (letters, digits, . _ -)');

export const kafkaConfigSchema = z
  .object({
    brokers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((b) => (Array.isArray(b) ? b : b.split(',').map((s) => s.trim()).filter(Boolean))),
    clientId: z.string().default('magpie'),
    ssl: z
      .union([
        z.boolean(),
        z.object({ caFile: z.string().optional(), certFile: z.string().optional(), keyFile: z.string().optional(), rejectUnauthorized: z.boolean().default(true) }).strict(),
      ])
      .default(false),
    sasl: z
      .object({
        mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
        username: z.string().min(1),
        /** The password comes from the environment or a secrets file, never from the topology itself. */
        passwordEnv: z.string().optional(),
        passwordFile: z.string().optional(),
      })
      .strict()
      .refine((s) => s.passwordEnv || s.passwordFile, 'give passwordEnv or passwordFile')
      .optional(),
    connectionTimeoutMs: z.number().int().positive().default(10_000),
    requestTimeoutMs: z.number().int().positive().default(30_000),
    /**
     * When the broker refuses a stage (a missing ACL): `stop` the stage (the process exits non-zero), or
     * `wait`, retrying until the ACL is granted (default stop). Either way nothing uncommitted is lost or written twice.
     */
    onAccessDenied: z.enum(['stop', 'wait']).optional(),
  })
  .strict();

export const serdeConfigSchema = z
  .object({
    /** Name of the compacted topic holding writer schemas when no registry is configured. */
    schemaTopic: topicName.default('_magpie-schemas'),
    registry: z
      .object({ url: z.string().url(), usernameEnv: z.string().optional(), passwordEnv: z.string().optional() })
      .strict()
      .optional(),
  })
  .strict()
  .default({ schemaTopic: '_magpie-schemas' });

export const topicsConfigSchema = z
  .object({
    /** Prepended to every topic name of the topology (tests and side-by-side runs use it). */
    prefix: z.string().regex(/^[A-Za-z0-9._-]*$/).default(''),
    partitions: z.number().int().min(1).default(3),
    replicationFactor: z.number().int().min(1).default(1),
    /** Extra topic-level configs, e.g. min.insync.replicas. */
    configs: z.record(z.string(), z.string()).default({}),
    deadLetter: topicName.default('magpie.dead-letter'),
    rejects: topicName.default('magpie.rejects'),
  })
  .strict()
  .default({ prefix: '', partitions: 3, replicationFactor: 1, configs: {}, deadLetter: 'magpie.dead-letter', rejects: 'magpie.rejects' });

export const retryConfigSchema = z
  .object({
    attempts: z.number().int().min(1).default(5),
    initialDelayMs: z.number().int().min(0).default(200),
    maxDelayMs: z.number().int().min(0).default(30_000),
  })
  .strict();

/** Fields every stage has, whatever its type. */
export const commonStageFields = {
  name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
  type: z.string(),
  input: topicName.optional(),
  output: topicName,
  /** Topics of the stage's extra ports (e.g. changelog). */
  ports: z.record(z.string(), topicName).default({}),
  rejects: topicName.optional(),
  deadLetter: topicName.optional(),
  /** Partitions of this stage's output topic; defaults to topics.partitions. */
  partitions: z.number().int().min(1).optional(),
  /**
   * Records handed to process() at once (a chunk). Default: a quarter of the stage's backend concurrency (so the
   * window below holds four times what the server runs at once), 32 for stages without a backend.
   */
  batchSize: z.number().int().min(1).max(10_000).optional(),
  /**
   * Chunks of one input partition processed at once (a sliding window), committed in offset order. Default 16
   * for stages with a backend, 8 for the others; always 1 for stages with state (chunks processed in order).
   */
  window: z.number().int().min(1).max(256).optional(),
  /**
   * `memory`: the stage runs chained after the stage before it (a sub-topology `a -> b`): in its consumer group
   * and transaction, handed that stage's output in memory, so the topic between them is never written. Only
   * where it is safe: the stage before is a processor without state whose output only this stage reads, with
   * the same exactlyOnce. `topic` (default) reads its input topic: a replay and scaling point of its own.
   */
  via: z.enum(['topic', 'memory']).default('topic'),
  /**
   * The stage's output is read outside the topology, a sink besides the last stage's (a branch that feeds its
   * own consumers): validation does not warn that no stage of the topology reads it.
   */
  sink: z.boolean().default(false),
  /**
   * Sources only: the source waits while a stage reading its output has more than this many records not yet
   * committed (read from the broker, so readers in other processes count; a reader that has never committed
   * holds nothing back). Default: twice what those stages'
   * windows process at once on all partitions, so they never wait for the source and it runs no further ahead.
   * 0: no bound.
   */
  maxBacklog: z.number().int().min(0).optional(),
  /** Input partitions processed concurrently by one instance. */
  concurrency: z.number().int().min(1).max(256).default(1),
  /** Transactional consume-process-produce; off trades exactly-once for at-least-once. */
  exactlyOnce: z.boolean().default(true),
  /** Retries of a failing batch before its records are isolated (non-retryable) or retried on (retryable). */
  retry: retryConfigSchema.default({ attempts: 5, initialDelayMs: 200, maxDelayMs: 30_000 }),
  /**
   * Attempts of one record that keeps failing with a retryable error (e.g. a timeout) while the stage's other
   * records are answered; past them it goes to the dead-letter topic. An outage (nothing answered, the circuit
   * opens) spends no record's attempts: records wait for recovery. 0: never dead-letter, retry forever.
   */
  deadLetterAfterAttempts: z.number().int().min(0).default(5),
  /**
   * After this many consecutive batch attempts failing with a retryable error the stage's circuit opens:
   * consumption pauses, and one batch probes after a cool-down that doubles while probes fail.
   */
  circuitBreaker: z
    .object({
      failureThreshold: z.number().int().min(1).default(3),
      coolDownMs: z.number().int().min(0).default(5_000),
      maxCoolDownMs: z.number().int().min(0).default(60_000),
    })
    .strict()
    .default({ failureThreshold: 3, coolDownMs: 5_000, maxCoolDownMs: 60_000 }),
  sessionTimeoutMs: z.number().int().min(6_000).default(45_000),
  /** Kafka principal the stage connects as (e.g. User:respond), for `magpie acls`; default User:<kafka.sasl.username>. */
  principal: z.string().regex(/^[A-Za-z]+:.+$/, 'a Kafka principal such as User:respond').optional(),
};

export const stageBaseSchema = z.object(commonStageFields).loose();

export const topologySchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, dots, dashes'),
    description: z.string().optional(),
    kafka: kafkaConfigSchema,
    serde: serdeConfigSchema,
    topics: topicsConfigSchema,
    backends: z.record(z.string(), z.unknown()).default({}),
    embedders: z.record(z.string(), z.unknown()).default({}),
    /** Reward-model endpoints, named like backends and shared by the stages that name them. */
    rewards: z.record(z.string(), z.unknown()).default({}),
    stages: z.array(z.unknown()).min(1, 'a topology needs at least one stage'),
  })
  .strict();

export type KafkaConfig = z.infer<typeof kafkaConfigSchema>;
export type SerdeConfig = z.infer<typeof serdeConfigSchema>;
export type TopicsConfig = z.infer<typeof topicsConfigSchema>;
export type RetryConfig = z.infer<typeof retryConfigSchema>;
export type StageBase = z.infer<typeof stageBaseSchema>;
