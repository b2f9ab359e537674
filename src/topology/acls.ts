import { ConfigError } from '../core/errors.js';
import { CLUSTER_RESOURCE, type AclOperation, type AclPatternType, type AclResourceType, type AclRule, type StageAcls } from '../kafka/acls.js';
import { READER_GROUP_PREFIX } from '../kafka/read-topic.js';
import { topologyChains } from './graph.js';
import type { ResolvedStage, Topology } from './load.js';

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
 * The least-privilege ACLs of each chain (a stage alone is a chain of one), listed under the chain's name
 * (`a -> b -> c`). A chain runs in its first stage's consumer group and transactions, as that stage's
 * principal; the topics between its stages are handed over in memory, so nothing is granted on them. DESCRIBE
 * is implied by READ and WRITE on the same resource, so it is not granted on its own; topics are created
 * beforehand by an administrator (`magpie topics create`), so no CREATE is granted either. `stageNames` picks
 * the chains that have any of those stages, as `--stage` runs them.
 */
export function topologyAcls(topology: Topology, stageNames?: readonly string[]): StageAcls[] {
  const chains = topologyChains(topology).filter((chain) => !stageNames || chain.some((s) => stageNames.includes(s.name)));
  return chains.map((chain) => {
    const head = chain[0]!;
    const principal = stagePrincipal(topology, head);
    const rules: AclRule[] = [];
    const add = (operation: AclOperation, resourceType: AclResourceType, resourceName: string, reason: string, patternType: AclPatternType = 'LITERAL') => {
      if (!rules.some((r) => r.operation === operation && r.resourceType === resourceType && r.resourceName === resourceName && r.patternType === patternType)) {
        rules.push({ principal, operation, resourceType, patternType, resourceName, reason });
      }
    };
    const stage = (s: ResolvedStage, reason: string) => (chain.length > 1 ? `${s.name}: ${reason}` : reason);
    if (head.input !== undefined) {
      add('READ', 'TOPIC', head.input, 'input topic');
      add('READ', 'GROUP', head.groupId, 'consumer group (joins, offsets)');
    }
    chain.forEach((s, k) => {
      for (const [port, topic] of Object.entries(s.ports)) {
        // What a chained stage emits on 'out' goes to the next stage in memory, not to its topic.
        if (port === 'out' && k < chain.length - 1) continue;
        add('WRITE', 'TOPIC', topic, stage(s, port === 'out' ? 'output topic' : `${port} topic`));
        // The runner reads each written topic's max.message.bytes, to split its sends to fit.
        add('DESCRIBE_CONFIGS', 'TOPIC', topic, stage(s, `${port === 'out' ? 'output' : port} topic's size limit`));
        // A stage's state port is read back from the beginning when the stage starts.
        if (s.definition.extraPorts?.[port]?.compacted) add('READ', 'TOPIC', topic, stage(s, `${port} topic (state restore)`));
      }
      add('WRITE', 'TOPIC', s.rejects, stage(s, 'rejects topic'));
      add('DESCRIBE_CONFIGS', 'TOPIC', s.rejects, stage(s, "rejects topic's size limit"));
      add('WRITE', 'TOPIC', s.deadLetter, stage(s, 'dead-letter topic'));
      if (s.input !== undefined) add('DESCRIBE_CONFIGS', 'TOPIC', s.deadLetter, stage(s, "dead-letter topic's size limit"));
    });
    if (head.exactlyOnce) {
      add('WRITE', 'TRANSACTIONAL_ID', transactionalIdPrefix(head), 'transactional producers', 'PREFIXED');
    } else {
      // Kafka 3.x also accepts WRITE on any topic for this; older brokers need the cluster grant.
      add('IDEMPOTENT_WRITE', 'CLUSTER', CLUSTER_RESOURCE, 'idempotent producer');
    }
    if (!topology.serde.registry) {
      add('READ', 'TOPIC', topology.serde.schemaTopic, 'schema topic (writer schemas of records read)');
      add('WRITE', 'TOPIC', topology.serde.schemaTopic, 'schema topic (writer schemas of records written)');
    }
    const readsWithoutGroup = !topology.serde.registry || chain.some((s) => Object.values(s.definition.extraPorts ?? {}).some((p) => p.compacted));
    if (readsWithoutGroup) {
      add('READ', 'GROUP', READER_GROUP_PREFIX, 'short-lived groups reading the schema or state topics', 'PREFIXED');
      add('DELETE', 'GROUP', READER_GROUP_PREFIX, 'removing those groups when done', 'PREFIXED');
    }
    return { stage: chain.map((s) => s.name).join(' -> '), principal, rules };
  });
}
