import kafkajs, { type AclEntry, type Kafka } from 'kafkajs';

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
  /** The stage, or the chain of stages run together (`a -> b -> c`). */
  readonly stage: string;
  readonly principal: string;
  readonly rules: readonly AclRule[];
}

/** The name the broker gives the cluster resource. */
export const CLUSTER_RESOURCE = 'kafka-cluster';

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
