import { describe, expect, it } from 'vitest';
import { aclKey, describeRule, distinctRules, kafkaAclsCommand, toAclEntry } from '../../../src/kafka/acls.js';
import { topologyAcls, transactionalIdPrefix } from '../../../src/topology/acls.js';
import { accessContext } from '../../../src/topology/build.js';
import { parseTopology } from '../../../src/topology/load.js';

const topology = (stages: string, kafka = '  brokers: b:9092\n  sasl: { mechanism: scram-sha-512, username: shared, passwordEnv: X }') =>
  parseTopology(`name: demo\nkafka:\n${kafka}\ntopics: { prefix: p-, partitions: 1 }\nembedders: { e: { model: m, localPath: /x } }\nbackends: { g: { type: openai, baseUrl: 'http://x/v1', model: m } }\nstages:\n${stages}`, 'demo.yaml');

const STAGES = `  - { name: gen, type: generate-instructions, backend: g, template: chatml, output: instructions, principal: 'User:gen' }
  - { name: dedupe, type: near-duplicate, input: embedded, output: deduped, ports: { changelog: index }, principal: 'User:dedupe' }
  - { name: keep, type: filter, input: deduped, output: sink, exactlyOnce: false, rules: [{ field: is_duplicate, eq: false }] }
`;

describe('magpie acls', () => {
  const acls = topologyAcls(topology(STAGES));
  const of = (stage: string) => acls.find((a) => a.stage === stage)!;
  const keys = (stage: string) => of(stage).rules.map(aclKey).sort();

  it('gives a processor read on its input and group, write on its outputs, its transactional ids by prefix', () => {
    expect(of('dedupe').principal).toBe('User:dedupe');
    expect(keys('dedupe')).toEqual(
      [
        'User:dedupe READ TOPIC:LITERAL:p-embedded',
        'User:dedupe READ GROUP:LITERAL:p-demo.dedupe',
        'User:dedupe WRITE TOPIC:LITERAL:p-deduped',
        'User:dedupe WRITE TOPIC:LITERAL:p-index',
        'User:dedupe READ TOPIC:LITERAL:p-index',
        'User:dedupe WRITE TOPIC:LITERAL:p-magpie.rejects',
        'User:dedupe WRITE TOPIC:LITERAL:p-magpie.dead-letter',
        'User:dedupe DESCRIBE_CONFIGS TOPIC:LITERAL:p-deduped',
        'User:dedupe DESCRIBE_CONFIGS TOPIC:LITERAL:p-index',
        'User:dedupe DESCRIBE_CONFIGS TOPIC:LITERAL:p-magpie.rejects',
        'User:dedupe DESCRIBE_CONFIGS TOPIC:LITERAL:p-magpie.dead-letter',
        'User:dedupe WRITE TRANSACTIONAL_ID:PREFIXED:p-demo.dedupe-p-embedded-',
        'User:dedupe READ TOPIC:LITERAL:_magpie-schemas',
        'User:dedupe WRITE TOPIC:LITERAL:_magpie-schemas',
        'User:dedupe READ GROUP:PREFIXED:magpie-read-',
        'User:dedupe DELETE GROUP:PREFIXED:magpie-read-',
      ].sort(),
    );
  });

  it('gives a source no input or group, and transactional ids under its group id', () => {
    // Its only read is its own progress (the target count across restarts).
    expect(keys('gen').filter((k) => k.includes('READ TOPIC:LITERAL:p-') || k.includes('GROUP:LITERAL'))).toEqual(['User:gen READ TOPIC:LITERAL:p-instructions.progress']);
    expect(keys('gen')).toContain('User:gen WRITE TRANSACTIONAL_ID:PREFIXED:p-demo.gen-');
  });

  it('gives an at-least-once stage idempotent write instead of transactional ids; its principal defaults to the SASL user', () => {
    expect(of('keep').principal).toBe('User:shared');
    expect(keys('keep')).toContain('User:shared IDEMPOTENT_WRITE CLUSTER:LITERAL:kafka-cluster');
    expect(keys('keep').some((k) => k.includes('TRANSACTIONAL_ID'))).toBe(false);
  });

  it("keeps one stage's transactional ids out of another's prefix, even when one name extends the other", () => {
    const t = topology(`  - { name: copy, type: pass-through, input: a, output: b }\n  - { name: copy-2, type: pass-through, input: b, output: c }\n`);
    const [copy, copy2] = t.stages;
    const prefix = transactionalIdPrefix(copy!);
    // The runner's ids are <groupId>-<input>-<partition>.
    expect(`${copy!.groupId}-${copy!.input}-0`.startsWith(prefix)).toBe(true);
    expect(`${copy2!.groupId}-${copy2!.input}-0`.startsWith(prefix)).toBe(false);
  });

  it('lists a rule shared by stages of one principal once, and prints it for people and for kafka-acls.sh', () => {
    const shared = topologyAcls(topology(`  - { name: a, type: pass-through, input: x, output: y }\n  - { name: b, type: pass-through, input: y, output: z }\n`));
    const all = shared.flatMap((s) => s.rules);
    const distinct = distinctRules(shared);
    expect(distinct.length).toBeLessThan(all.length);
    expect(new Set(distinct.map(aclKey)).size).toBe(distinct.length);
    const txn = distinct.find((r) => r.resourceType === 'TRANSACTIONAL_ID')!;
    expect(describeRule(txn)).toBe("ALLOW User:shared WRITE on TRANSACTIONAL_ID 'p-demo.a-p-x-*' (prefixed)");
    expect(kafkaAclsCommand(txn, 'b:9092')).toBe(
      "kafka-acls.sh --bootstrap-server b:9092 --command-config admin.properties --add --allow-principal 'User:shared' --operation Write --transactional-id 'p-demo.a-p-x-' --resource-pattern-type prefixed",
    );
    expect(toAclEntry(txn)).toEqual({ principal: 'User:shared', host: '*', operation: 4, permissionType: 3, resourceType: 5, resourceName: 'p-demo.a-p-x-', resourcePatternType: 4 });
  });

  it('uses the ANONYMOUS principal for plaintext, and asks for a principal when TLS certificates name it', () => {
    const stage = `  - { name: a, type: pass-through, input: x, output: y }\n`;
    expect(topologyAcls(topology(stage, '  brokers: b:9092'))[0]!.principal).toBe('User:ANONYMOUS');
    expect(() => topologyAcls(topology(stage, '  brokers: b:9092\n  ssl: true'))).toThrow(/stage a: no principal: give the stage a principal/);
  });

  it('grants a chain, as its first stage\'s principal, what all its stages do, and nothing on the topics it hands over in memory', () => {
    const t = topology(
      `  - { name: lang, type: tag-language, input: responses, output: lang-tagged, principal: 'User:tags' }
  - { name: keep, type: filter, via: memory, input: lang-tagged, output: kept, deadLetter: keep.dead, rules: [{ field: language, eq: en }] }
  - { name: copy, type: pass-through, schema: magpie.Conversation, via: memory, input: kept, output: tagged, rejects: copy.rejects }
  - { name: sink, type: pass-through, schema: magpie.Conversation, input: tagged, output: sink, principal: 'User:sink' }
`,
    );
    const acls = topologyAcls(t);
    expect(acls.map((a) => [a.stage, a.principal])).toEqual([
      ['lang -> keep -> copy', 'User:tags'],
      ['sink', 'User:sink'],
    ]);
    const chain = acls[0]!.rules;
    const keysOf = (rules: typeof chain) => rules.map(aclKey).filter((k) => !k.includes('_magpie-schemas') && !k.includes('magpie-read-')).sort();
    expect(keysOf(chain)).toEqual(
      [
        // The head's input and consumer group, and transactional ids: the chain commits in the head's.
        'User:tags READ TOPIC:LITERAL:p-responses',
        'User:tags READ GROUP:LITERAL:p-demo.lang',
        'User:tags WRITE TRANSACTIONAL_ID:PREFIXED:p-demo.lang-p-responses-',
        // Only the last stage's output; every stage's rejects and dead letters.
        'User:tags WRITE TOPIC:LITERAL:p-tagged',
        'User:tags DESCRIBE_CONFIGS TOPIC:LITERAL:p-tagged',
        'User:tags WRITE TOPIC:LITERAL:p-magpie.rejects',
        'User:tags DESCRIBE_CONFIGS TOPIC:LITERAL:p-magpie.rejects',
        'User:tags WRITE TOPIC:LITERAL:p-magpie.dead-letter',
        'User:tags DESCRIBE_CONFIGS TOPIC:LITERAL:p-magpie.dead-letter',
        'User:tags WRITE TOPIC:LITERAL:p-keep.dead',
        'User:tags DESCRIBE_CONFIGS TOPIC:LITERAL:p-keep.dead',
        'User:tags WRITE TOPIC:LITERAL:p-copy.rejects',
        'User:tags DESCRIBE_CONFIGS TOPIC:LITERAL:p-copy.rejects',
      ].sort(),
    );
    // Nothing of the chained stages' own groups, ids or the topics between them, for any principal.
    const all = acls.flatMap((a) => a.rules).map(aclKey).join('\n');
    for (const absent of ['p-lang-tagged', 'p-kept', 'p-demo.keep', 'p-demo.copy']) expect(all).not.toContain(absent);
    expect(chain.find((r) => r.resourceName === 'p-keep.dead' && r.operation === 'WRITE')!.reason).toBe('keep: dead-letter topic');
  });

  it('picks a whole chain when --stage names any stage of it, and explains refusals against the chain\'s principal', () => {
    const t = topology(`  - { name: a, type: pass-through, input: x, output: y, principal: 'User:a' }\n  - { name: b, type: pass-through, via: memory, input: y, output: z }\n  - { name: c, type: pass-through, input: z, output: w, principal: 'User:c' }\n`);
    expect(topologyAcls(t, ['b']).map((a) => a.stage)).toEqual(['a -> b']);
    const ctx = accessContext(t, 'stage a -> b', t.stages.slice(0, 2));
    expect(ctx.principal).toBe('User:a');
    expect(ctx.rules.map(aclKey)).toContain('User:a WRITE TOPIC:LITERAL:p-z');
    expect(ctx.rules.map(aclKey)).not.toContain('User:a WRITE TOPIC:LITERAL:p-y');
  });
});
