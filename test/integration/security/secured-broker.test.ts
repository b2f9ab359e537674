/**
 * A secured broker (TLS + SCRAM-SHA-512, StandardAuthorizer, no ACL means deny), started by this file with
 * one SCRAM user per stage. The stages of topologies/test/secured.yaml (the stage kinds of the local topology)
 * run with exactly the ACLs `magpie acls` generates; taking one away stops the stage with a message naming
 * it, and once it is granted again the run finishes with nothing lost and nothing duplicated.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Kafka } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { errorMessage } from '../../../src/core/errors.js';
import { createLogger, type Logger } from '../../../src/core/logger.js';
import { applyAcls, describeRule, revokeAcls, type AclRule } from '../../../src/kafka/acls.js';
import { topologyAcls } from '../../../src/topology/acls.js';
import { classifyAccessFailure, explainAccessFailure, KafkaAccessError } from '../../../src/kafka/auth-errors.js';
import { createKafka } from '../../../src/kafka/client.js';
import { createKafkaSerde } from '../../../src/kafka/schema-store.js';
import type { Instruction } from '../../../src/serde/records.generated.js';
import type { RecordSerde } from '../../../src/serde/serde.js';
import { accessContext, createTopologyTopics, runTopology, type RunningTopology } from '../../../src/topology/build.js';
import { waitUntilDrained } from '../../../src/topology/drain.js';
import { loadTopologyFile, type Topology } from '../../../src/topology/load.js';
import { PROJECT_ROOT, startBroker, uniquePrefix, type Broker } from '../../support/broker.js';
import { countRecords } from '../../support/faults/sink.js';
import { FaultyOpenAIServer, echoAnswer } from '../../support/faults/openai-server.js';
import { eventually, makeInstruction, produceRecords, readAll } from '../../support/records.js';

const STAGES = ['instructions', 'responses', 'embed', 'dedupe', 'filter'] as const;
const TOPOLOGY = 'topologies/test/secured.yaml';
const API_KEY = 'sk-secured-test-4f1c9e2b7a';

let broker: Broker;
let server: FaultyOpenAIServer;
let keyFile: string;
let admin: Kafka;
let adminSerde: RecordSerde;
const lines: string[] = [];
const logger: Logger = createLogger({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
const running: RunningTopology[] = [];

// Completions (the instruction source) get a distinct question each; chats get an echo.
let asked = 0;
const answer = (body: Parameters<typeof echoAnswer>[0], p: string) => (p.endsWith('/chat/completions') ? echoAnswer(body, p) : `Which ${++asked}th prime number is the largest below ${asked * 997}?`);

function env(user: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    KAFKA_BROKERS: broker.bootstrap,
    MAGPIE_KAFKA_CA: broker.security!.caFile,
    MAGPIE_KAFKA_USER: user,
    MAGPIE_KAFKA_PASSWORD_FILE: broker.security!.passwordFile(user),
    FAKE_OPENAI_URL: server.url,
    FAKE_OPENAI_KEY_FILE: keyFile,
    ...extra,
  };
}

function load(user: string, prefix: string, extra: Record<string, string> = {}): Promise<Topology> {
  return loadTopologyFile(TOPOLOGY, { env: env(user, extra), topicPrefix: prefix });
}

/** Runs one stage in its own client, as its own principal (as one process per stage would). */
async function runStage(stage: string, prefix: string, extra: Record<string, string> = {}): Promise<RunningTopology> {
  const run = await runTopology(await load(stage, prefix, extra), logger, { stages: [stage], createTopics: false });
  running.push(run);
  return run;
}

/** Topics created by the super user, then exactly the generated ACLs of the given stages. */
async function prepare(prefix: string, stages: readonly string[] = STAGES): Promise<{ topology: Topology; rules: AclRule[] }> {
  const topology = await load('admin', prefix);
  await createTopologyTopics(admin, topology);
  const rules = topologyAcls(topology, stages).flatMap((a) => a.rules);
  await applyAcls(admin, rules);
  return { topology, rules };
}

function uuids(records: { uuid: string }[]): string[] {
  return records.map((r) => r.uuid).sort();
}

/** `magpie ...args` in a child process, as `user` (environment overrides after it). */
function magpie(args: string[], user: string, overrides: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', [path.join(PROJECT_ROOT, 'bin', 'magpie.js'), ...args], { cwd: PROJECT_ROOT, env: { ...env(user, overrides), MAGPIE_LOG_LEVEL: 'warn' }, timeout: 240_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  broker = await startBroker({ name: 'secured', fresh: true, secure: { users: [...STAGES, 'copy'] } });
  server = await new FaultyOpenAIServer(answer).listen();
  keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'magpie-secured-')), 'api-key');
  writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 });
  const adminTopology = await load('admin', 'unused-');
  admin = createKafka(adminTopology.kafka, logger);
  adminSerde = createKafkaSerde(admin, adminTopology.serde);
});

afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((r) => r.stop(0)));
});

afterAll(async () => {
  await adminSerde?.close();
  await server?.close();
  await broker?.stop();
});

describe('secured broker: TLS + SCRAM with generated least-privilege ACLs', () => {
  it('runs the topology end to end with exactly the ACLs magpie acls --apply creates', async () => {
    const prefix = uniquePrefix('sec-e2e');
    const topology = await load('admin', prefix);
    await createTopologyTopics(admin, topology);
    const cli = await magpie(['--prefix', prefix, 'acls', TOPOLOGY, '--apply', '--admin-user', 'admin', '--admin-password-file', broker.security!.passwordFile('admin')], 'admin');
    expect(cli.stderr).toContain('created');
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain(`ALLOW User:dedupe READ on TOPIC '${prefix}dedupe-index'`);
    expect(cli.stdout).toContain(`ALLOW User:responses WRITE on TRANSACTIONAL_ID '${prefix}secured.responses-${prefix}instructions-*' (prefixed)`);

    // Downstream first, so the source's records find their consumers ready.
    const runs: RunningTopology[] = [];
    for (const stage of [...STAGES].reverse()) runs.unshift(await runStage(stage, prefix));
    for (const run of runs) await waitUntilDrained(run);

    const t = (name: string) => `${prefix}${name}`;
    const produced = await readAll<Instruction>(admin, adminSerde, t('instructions'), 'magpie.Instruction');
    expect(produced).toHaveLength(30);
    const sink = await readAll<{ uuid: string }>(admin, adminSerde, t('sink'), 'magpie.Conversation');
    expect(sink).toHaveLength(30);
    expect(uuids(sink)).toEqual(uuids(produced));
    expect(await countRecords(admin, t('magpie.rejects'))).toBe(0);
    expect(await countRecords(admin, t('magpie.dead-letter'))).toBe(0);
    expect(await countRecords(admin, t('dedupe-index'))).toBe(30);
    // The API key reached the inference server, and no log line carries it.
    expect([...server.authorizations]).toEqual([`Bearer ${API_KEY}`]);
    expect(lines.join('\n')).not.toContain(API_KEY);
  });

  it("runs a chain as its first stage's principal with the ACLs generated for it, none on the topic between its stages", async () => {
    const file = 'topologies/test/secured-chain.yaml';
    const prefix = uniquePrefix('sec-chain');
    const topology = await loadTopologyFile(file, { env: env('admin'), topicPrefix: prefix });
    await createTopologyTopics(admin, topology);
    const acls = topologyAcls(topology);
    expect(acls.map((a) => [a.stage, a.principal])).toEqual([['copy -> copy-again', 'User:copy']]);
    expect(acls[0]!.rules.some((r) => r.resourceName === `${prefix}between`)).toBe(false);
    await applyAcls(admin, acls.flatMap((a) => a.rules));
    const sent = Array.from({ length: 20 }, (_, i) => makeInstruction(i));
    await produceRecords(admin, adminSerde, `${prefix}in`, 'magpie.Instruction', sent);
    const from = lines.length;

    // --stage with the chain's second stage runs the whole chain, connecting as User:copy.
    const run = await runTopology(await loadTopologyFile(file, { env: env('copy'), topicPrefix: prefix }), logger, { stages: ['copy-again'], createTopics: false });
    running.push(run);
    await waitUntilDrained(run);
    const out = await readAll<{ uuid: string }>(admin, adminSerde, `${prefix}out`, 'magpie.Instruction');
    expect(uuids(out)).toEqual(uuids(sent));
    expect(await countRecords(admin, `${prefix}between`)).toBe(0);
    expect(lines.slice(from).filter((l) => l.includes('missing ACL'))).toEqual([]);
  });

  /** One generated ACL of each resource type (and of both operations on topics) is taken away in turn. */
  const removals: { name: string; pick: (stage: string, prefix: string, rules: AclRule[]) => AclRule; mode: 'stop' | 'wait' }[] = [
    { name: 'READ on the input topic', mode: 'stop', pick: (_s, p, r) => r.find((x) => x.operation === 'READ' && x.resourceName === `${p}instructions`)! },
    { name: 'READ on the consumer group', mode: 'stop', pick: (_s, p, r) => r.find((x) => x.resourceType === 'GROUP' && x.resourceName === `${p}secured.responses`)! },
    { name: 'WRITE on the output topic', mode: 'wait', pick: (_s, p, r) => r.find((x) => x.operation === 'WRITE' && x.resourceName === `${p}responses`)! },
    // kafkajs hides this refusal behind "coordinator not found", which a restarting broker also causes: the
    // stage names the likely missing grant and waits, whatever onAccessDenied says.
    { name: 'WRITE on the transactional ids', mode: 'wait', pick: (_s, _p, r) => r.find((x) => x.resourceType === 'TRANSACTIONAL_ID')! },
    // Reading the schema topic is needed only for records of another schema version than this build's.
    { name: 'WRITE on the schema topic', mode: 'stop', pick: (_s, _p, r) => r.find((x) => x.operation === 'WRITE' && x.resourceName === '_magpie-schemas')! },
  ];

  for (const removal of removals) {
    it(`names the missing ACL (${removal.name}), and completes exactly once after it is granted again`, async () => {
      const prefix = uniquePrefix(`sec-rm-${removal.name}`);
      const { rules } = await prepare(prefix, ['responses']);
      const removed = removal.pick('responses', prefix, rules);
      expect(removed, removal.name).toBeDefined();
      await revokeAcls(admin, [removed]);
      const sent = Array.from({ length: 20 }, (_, i) => makeInstruction(i));
      await produceRecords(admin, adminSerde, `${prefix}instructions`, 'magpie.Instruction', sent);
      const expected = describeRule(removed);
      const from = lines.length;

      let failure: unknown;
      let run: RunningTopology | undefined;
      try {
        run = await runStage('responses', prefix, { MAGPIE_ON_ACCESS_DENIED: removal.mode });
        const runner = run.runners.get('responses')!;
        if (removal.mode === 'stop') {
          failure = await new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`the stage did not stop within 120 s (${lines.length - from} log lines since it started)`)), 120_000);
            runner.once('fatal', (err: unknown) => (clearTimeout(timer), resolve(err)));
          });
        }
      } catch (err) {
        failure = err;
      }
      if (removal.mode === 'stop') {
        expect(failure, errorMessage(failure)).toBeInstanceOf(KafkaAccessError);
        expect(errorMessage(failure)).toContain(expected);
      } else {
        await eventually(() => lines.slice(from).some((l) => l.includes(expected)), 120_000);
      }
      // The log names the principal and the missing grant once, however many retries there are.
      const reports = lines.slice(from).filter((l) => l.includes(`missing ACL: ${expected}`));
      expect(reports.length, lines.slice(from).join('\n')).toBeGreaterThanOrEqual(1);
      expect(reports[0]).toContain('User:responses');
      expect(await countRecords(admin, `${prefix}responses`)).toBe(0);

      await applyAcls(admin, [removed]);
      if (removal.mode === 'stop') {
        await run?.stop(0);
        run = await runStage('responses', prefix);
      }
      await waitUntilDrained(run!);
      const out = await readAll<{ uuid: string }>(admin, adminSerde, `${prefix}responses`, 'magpie.Conversation');
      expect(out).toHaveLength(sent.length);
      expect(uuids(out)).toEqual(uuids(sent));
      expect(await countRecords(admin, `${prefix}magpie.dead-letter`)).toBe(0);
    });
  }

  it('refuses a wrong password, an untrusted certificate and a plaintext client: clear error, exit non-zero, nothing written', async () => {
    const prefix = uniquePrefix('sec-refused');
    await prepare(prefix, ['responses']);
    const dir = mkdtempSync(path.join(tmpdir(), 'magpie-secured-'));
    const wrong = path.join(dir, 'wrong-password');
    writeFileSync(wrong, 'not-the-password\n', { mode: 0o600 });
    const otherCa = path.join(dir, 'other-ca.crt');
    // A CA that did not sign the broker's certificate.
    await new Promise<void>((resolve, reject) =>
      execFile('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'k'), '-out', otherCa, '-days', '1', '-subj', '/CN=other-ca'], (e) => (e ? reject(e) : resolve())),
    );
    const plaintext = path.join(dir, 'plaintext.yaml');
    writeFileSync(plaintext, `name: secured\nkafka:\n  brokers: ${broker.bootstrap}\n  connectionTimeoutMs: 3000\nstages:\n  - { name: responses, type: pass-through, schema: magpie.Instruction, input: instructions, output: responses }\n`);
    const run = (topology: string) => ['--prefix', prefix, 'run', topology, '--exit-when-done', '--stage', 'responses'];
    // Connection failures are retried by the client for a while: the three run side by side.
    const [wrongPassword, untrusted, plain] = await Promise.all([
      magpie(run(TOPOLOGY), 'responses', { MAGPIE_KAFKA_PASSWORD_FILE: wrong }),
      magpie(run(TOPOLOGY), 'responses', { MAGPIE_KAFKA_CA: otherCa }),
      magpie(run(plaintext), 'responses'),
    ]);
    expect(wrongPassword.code, wrongPassword.stderr).not.toBe(0);
    expect(wrongPassword.stderr).toMatch(/refused authentication \(SCRAM-SHA-512 as user 'responses'\)/);
    expect(wrongPassword.stderr).not.toContain('not-the-password');
    expect(untrusted.code, untrusted.stderr).not.toBe(0);
    expect(untrusted.stderr).toMatch(/TLS with the broker failed \(self[- ]signed certificate in certificate chain\)/);
    expect(plain.code, plain.stderr).not.toBe(0);
    expect(plain.stderr).toContain('the broker closed the connection at once: if its listener uses TLS');
    expect(await countRecords(admin, `${prefix}responses`)).toBe(0);
  });

  it("keeps each principal to its own set: no reading another stage's input, no writing outside its topics", async () => {
    const prefix = uniquePrefix('sec-least');
    await prepare(prefix);
    const topology = await load('responses', prefix);
    const kafka = createKafka(topology.kafka, logger);
    const readOther = kafka.consumer({ groupId: `${prefix}secured.responses`, retry: { retries: 0 } });
    const refusedRead = await (async () => {
      await readOther.connect();
      await readOther.subscribe({ topics: [`${prefix}embedded`], fromBeginning: true });
    })().then(() => undefined, (err: unknown) => err);
    await readOther.disconnect();
    expect(classifyAccessFailure(refusedRead)).toEqual({ kind: 'not-authorized', resourceType: 'TOPIC' });

    const producer = kafka.producer({ retry: { retries: 0 } });
    await producer.connect();
    const refusedWrite = await producer.send({ topic: `${prefix}sink`, messages: [{ value: 'x' }] }).then(() => undefined, (err: unknown) => err);
    // Another stage's consumer group is not this principal's either.
    const refusedGroup = await (async () => {
      const a = kafka.admin();
      await a.connect();
      try {
        await a.fetchOffsets({ groupId: `${prefix}secured.embed`, topics: [`${prefix}instructions`] });
      } finally {
        await a.disconnect();
      }
    })().then(() => undefined, (err: unknown) => err);
    await producer.disconnect();
    expect(classifyAccessFailure(refusedWrite)).toEqual({ kind: 'not-authorized', resourceType: 'TOPIC' });
    // kafkajs reports a refused group lookup only as a coordinator not found: explained as a GROUP refusal.
    const explained = await explainAccessFailure(refusedGroup, accessContext(topology, 'stage responses', topology.stages.filter((s) => s.name === 'responses')), {
      coordinator: 'GROUP',
      names: [`${prefix}secured.embed`],
    });
    expect(explained?.code).toBe('KAFKA_NOT_AUTHORIZED');
    expect(explained?.message).toContain('stage responses has no ACL on that GROUP');
    expect(await countRecords(admin, `${prefix}sink`)).toBe(0);
  });
});
