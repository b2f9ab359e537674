import kafkajs, { type AclEntry, type Kafka } from 'kafkajs';
import { ConfigError } from '../core/errors.js';
import type { ResolvedStage, Topology } from '../topology/load.js';
import { READER_GROUP_PREFIX } from './read-topic.js';

export type AclResourceType = 'TOPIC' | 'GROUP' | 'TRANSACTIONAL_ID' | 'CLUSTER';
export type AclOperation = 'READ' | 'WRITE' | 'DELETE' | 'IDEMPOTENT_WRITE' | 'DESCRIBE_CONFIGS';
export type AclPatternType = 'LITERAL' | 'PREFIXED';

/** One ALLOW ACL a stage's principal needs, and why. */
export interface AclRule {
  readonly principal: string;
  readonly operation: AclOperation;
  readonly resourceType: AclResourceType;
  readonly patternType: AclPatternType;
  readonly resourceName: string;
  readonly reason: string;
}

export interface StageAcls {
  readonly stage: string;
  readonly principal: string;
  readonly rules: readonly AclRule[];
}

/** The name the broker gives the cluster resource. */
export const CLUSTER_RESOURCE = 'kafka-cluster';

/**
 * A stage's principal: its own `principal` field, else the user the topology connects as. With a
 * principal per stage, each stage runs in a process connecting as that user.
 */
export function stagePrincipal(topology: Topology, stage: ResolvedStage): string {
  const own = stage.config['principal'];
  if (typeof own === 'string') return own;
  if (topology.kafka.sasl) return `User:${topology.kafka.sasl.username}`;
  // A plaintext connection without SASL is the broker's ANONYMOUS user; a TLS client certificate names its own.
  if (!topology.kafka.ssl) return 'User:ANONYMOUS';
  throw new ConfigError(`${topology.source}: stage ${stage.name}: no principal: give the stage a principal (e.g. principal: User:${stage.name}) or kafka.sasl.username`);
}

/**
 * Prefix of every transactional id a stage uses: a processor has one per input partition
 * (`<groupId>-<input>-<partition>`), a source one per instance (`<groupId>-<suffix>`). The input topic in the
 * processor's prefix keeps it from covering another stage's ids (stage names have no dots, topics may).
 */
export function transactionalIdPrefix(stage: ResolvedStage): string {
  return stage.input === undefined ? `${stage.groupId}-` : `${stage.groupId}-${stage.input}-`;
}

/**
 * The least-privilege ACLs of each stage. DESCRIBE is implied by READ and WRITE on the same resource, so it is
 * not granted on its own; topics are created beforehand by an administrator (`magpie topics create`), so no
 * CREATE is granted either.
 */
export function topologyAcls(topology: Topology, stageNames?: readonly string[]): StageAcls[] {
  const stages = stageNames ? topology.stages.filter((s) => stageNames.includes(s.name)) : topology.stages;
  return stages.map((stage) => {
    const principal = stagePrincipal(topology, stage);
    const rules: AclRule[] = [];
    const add = (operation: AclOperation, resourceType: AclResourceType, resourceName: string, reason: string, patternType: AclPatternType = 'LITERAL') => {
      if (!rules.some((r) => r.operation === operation && r.resourceType === resourceType && r.resourceName === resourceName && r.patternType === patternType)) {
        rules.push({ principal, operation, resourceType, patternType, resourceName, reason });
      }
    };
    if (stage.input !== undefined) {
      add('READ', 'TOPIC', stage.input, 'input topic');
      add('READ', 'GROUP', stage.groupId, 'consumer group (joins, offsets)');
    }
    for (const [port, topic] of Object.entries(stage.ports)) {
      add('WRITE', 'TOPIC', topic, port === 'out' ? 'output topic' : `${port} topic`);
      // The runner reads each written topic's max.message.bytes, to split its sends to fit.
      add('DESCRIBE_CONFIGS', 'TOPIC', topic, `${port === 'out' ? 'output' : port} topic's size limit`);
      // A stage's state port is read back from the beginning when the stage starts.
      if (stage.definition.extraPorts?.[port]?.compacted) add('READ', 'TOPIC', topic, `${port} topic (state restore)`);
    }
    add('WRITE', 'TOPIC', stage.rejects, 'rejects topic');
    add('DESCRIBE_CONFIGS', 'TOPIC', stage.rejects, "rejects topic's size limit");
    add('WRITE', 'TOPIC', stage.deadLetter, 'dead-letter topic');
    if (stage.input !== undefined) add('DESCRIBE_CONFIGS', 'TOPIC', stage.deadLetter, "dead-letter topic's size limit");
    if (stage.exactlyOnce) {
      add('WRITE', 'TRANSACTIONAL_ID', transactionalIdPrefix(stage), 'transactional producers', 'PREFIXED');
    } else {
      // Kafka 3.x also accepts WRITE on any topic for this; older brokers need the cluster grant.
      add('IDEMPOTENT_WRITE', 'CLUSTER', CLUSTER_RESOURCE, 'idempotent producer');
    }
    if (!topology.serde.registry) {
      add('READ', 'TOPIC', topology.serde.schemaTopic, 'schema topic (writer schemas of records read)');
      add('WRITE', 'TOPIC', topology.serde.schemaTopic, 'schema topic (writer schemas of records written)');
    }
    const readsWithoutGroup = !topology.serde.registry || Object.values(stage.definition.extraPorts ?? {}).some((p) => p.compacted);
    if (readsWithoutGroup) {
      add('READ', 'GROUP', READER_GROUP_PREFIX, 'short-lived groups reading the schema or state topics', 'PREFIXED');
      add('DELETE', 'GROUP', READER_GROUP_PREFIX, 'removing those groups when done', 'PREFIXED');
    }
    return { stage: stage.name, principal, rules };
  });
}

/** The same ACL granted to several stages of one principal is listed (and created) once. */
export function distinctRules(acls: readonly StageAcls[]): AclRule[] {
  const seen = new Set<string>();
  return acls.flatMap((a) => a.rules).filter((r) => {
    const key = aclKey(r);
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

export function aclKey(rule: Pick<AclRule, 'principal' | 'operation' | 'resourceType' | 'patternType' | 'resourceName'>): string {
  return `${rule.principal} ${rule.operation} ${rule.resourceType}:${rule.patternType}:${rule.resourceName}`;
}

/** How a rule reads in messages: `ALLOW User:x WRITE on TOPIC magpie.out`. */
export function describeRule(rule: Pick<AclRule, 'principal' | 'operation' | 'resourceType' | 'patternType' | 'resourceName'>): string {
  const name = rule.resourceType === 'CLUSTER' ? '' : rule.patternType === 'PREFIXED' ? ` '${rule.resourceName}*' (prefixed)` : ` '${rule.resourceName}'`;
  return `ALLOW ${rule.principal} ${rule.operation} on ${rule.resourceType}${name}`;
}

/** The rule as a kafka-acls.sh command, for clusters administered with the Kafka tools. */
export function kafkaAclsCommand(rule: AclRule, bootstrap: string): string {
  const op = rule.operation.split('_').map((w) => w[0] + w.slice(1).toLowerCase()).join('');
  const resource =
    rule.resourceType === 'CLUSTER' ? '--cluster' : `--${rule.resourceType === 'TRANSACTIONAL_ID' ? 'transactional-id' : rule.resourceType.toLowerCase()} '${rule.resourceName}'`;
  const pattern = rule.patternType === 'PREFIXED' ? ' --resource-pattern-type prefixed' : '';
  return `kafka-acls.sh --bootstrap-server ${bootstrap} --command-config admin.properties --add --allow-principal '${rule.principal}' --operation ${op} ${resource}${pattern}`;
}

// kafkajs is CommonJS: its enums are not named exports Node can see.
const { AclOperationTypes, AclPermissionTypes, AclResourceTypes, ResourcePatternTypes } = kafkajs;

export function toAclEntry(rule: AclRule): AclEntry {
  return {
    principal: rule.principal,
    host: '*',
    operation: AclOperationTypes[rule.operation],
    permissionType: AclPermissionTypes.ALLOW,
    resourceType: AclResourceTypes[rule.resourceType],
    resourceName: rule.resourceName,
    resourcePatternType: ResourcePatternTypes[rule.patternType],
  };
}

/** Creates the rules through the Admin API (the connecting principal needs ALTER on the cluster: a super user). */
export async function applyAcls(kafka: Kafka, rules: readonly AclRule[]): Promise<void> {
  if (rules.length === 0) return;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createAcls({ acl: rules.map(toAclEntry) });
  } finally {
    await admin.disconnect();
  }
}

/** Removes exactly these rules (the Admin API's deleteAcls with one exact filter per rule). */
export async function revokeAcls(kafka: Kafka, rules: readonly AclRule[]): Promise<void> {
  if (rules.length === 0) return;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.deleteAcls({ filters: rules.map(toAclEntry) });
  } finally {
    await admin.disconnect();
  }
}
