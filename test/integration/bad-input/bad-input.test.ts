/**
 * Bad input against a running `magpie run` process (generate-responses → tag-llm-judge, both on a fake
 * OpenAI-compatible server): every bad record gets a log line and a dead-letter or reject record that says
 * why, and good records sent afterwards still come out.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { FINGERPRINT_HEADER, SCHEMA_HEADER, createSerde } from '../../../src/serde/serde.js';
import type { Conversation, DeadLetter, Rejected } from '../../../src/serde/records.generated.js';
import { FaultyOpenAIServer, echoAnswer } from '../../support/faults/openai-server.js';
import { Scenario } from '../../support/faults/scenario.js';
import { countRecords } from '../../support/faults/sink.js';
import type { StageProcess } from '../../support/faults/stage-process.js';
import { eventually, makeInstruction, readAll } from '../../support/records.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'fatal' });
const bootstrap = inject('kafkaBootstrap');
const serde = createSerde();

const HUGE = 'HUGE-ANSWER please';
const good = (from: number, n: number) => Array.from({ length: n }, (_, i) => makeInstruction(from + i));
const before = good(0, 20);
const after = good(1_000, 30);
const empty = makeInstruction(500, '   ');
const megabytes = makeInstruction(501, `Summarise this: ${'lorem ipsum '.repeat(250_000)}`);
const hugeAnswer = makeInstruction(502, HUGE);

describe('bad input (real broker, real process)', () => {
  const server = new FaultyOpenAIServer((body, path) => {
    // The judge (chat) never answers JSON; the responder answers one instruction with 4.5 MB of text, which
    // its record carries twice (response and conversations): over the topics' 8 MB max.message.bytes.
    if (path.endsWith('/chat/completions')) return 'Certainly! The quality is {excellent, probably';
    return body.prompt?.includes(HUGE) ? 'z'.repeat(4_500_000) : echoAnswer(body, path);
  });
  let s: Scenario;
  let stage: StageProcess;
  let dead: DeadLetter[];
  let rejected: Rejected[];

  beforeAll(async () => {
    await server.listen();
    s = new Scenario({ name: 'bad-input', brokers: bootstrap, topology: 'topologies/test/inference-faults.yaml', stage: 'respond', env: { FAKE_OPENAI_URL: server.url } }, serde, logger);
    await s.prepare(0, before);
    stage = s.spawn({ logLevel: 'debug' });
    await stage.started();
    const producer = s.kafka.producer({ idempotent: true });
    await producer.connect();
    const valid = await serde.encode('magpie.Instruction', makeInstruction(503));
    const unknownSchema = { [SCHEMA_HEADER]: 'magpie.Instruction', [FINGERPRINT_HEADER]: 'f'.repeat(64) };
    const bad = await Promise.all([empty, megabytes, hugeAnswer].map(async (v) => ({ key: v.uuid, ...(await serde.encode('magpie.Instruction', v)) })));
    await producer.send({
      topic: s.input,
      acks: -1,
      messages: [
        { key: 'corrupt', value: Buffer.from('this is not avro at all'), headers: valid.headers },
        { key: 'not-avro', value: Buffer.from(JSON.stringify({ uuid: 'x', instruction: 'plain JSON' })) },
        { key: 'unknown-schema', value: valid.value, headers: unknownSchema },
        { key: 'corrupt-1mb', value: Buffer.alloc(1_000_000, 0xab), headers: valid.headers },
        ...bad,
      ],
    });
    await producer.send({ topic: s.input, acks: -1, messages: await Promise.all(after.map(async (v) => ({ key: v.uuid, ...(await serde.encode('magpie.Instruction', v)) }))) });
    await producer.disconnect();
    await s.drained(120_000);
    // The judge reads a transactional topic (commit markers take offsets): wait for its records instead.
    const judged = s.topology.stages.find((x) => x.name === 'judge')!.ports.out!;
    await eventually(async () => (await countRecords(s.kafka, judged)) >= before.length + after.length, 60_000, 1_000);
    dead = await readAll<DeadLetter>(s.kafka, serde, s.deadLetter, 'magpie.DeadLetter');
    rejected = await readAll<Rejected>(s.kafka, serde, s.stage.rejects, 'magpie.Rejected');
  });

  afterAll(async () => {
    await s?.close();
    await server.close();
  });

  const deadFor = (key: string) => dead.find((d) => d.source_key?.toString() === key);
  const logged = (msg: string, offsetOf: (d: DeadLetter) => number) => (d: DeadLetter) =>
    stage.lines.some((l) => l.msg === msg && l.offset === String(offsetOf(d)) && l.partition === d.source_partition);

  it('dead-letters a corrupt record, a non-Avro one and one with an unknown schema fingerprint, each with its reason and a log line', () => {
    const corrupt = deadFor('corrupt');
    expect(corrupt).toMatchObject({ stage: 'respond', code: 'SERDE_CORRUPT', source_topic: s.input });
    expect(corrupt!.reason).toMatch(/does not decode as magpie\.Instruction/);
    expect(corrupt!.original?.toString()).toBe('this is not avro at all');
    expect(deadFor('not-avro')).toMatchObject({ code: 'SERDE_UNKNOWN_SCHEMA', reason: expect.stringMatching(/no magpie-schema-fp header/) });
    expect(deadFor('unknown-schema')).toMatchObject({ code: 'SERDE_UNKNOWN_SCHEMA', reason: expect.stringMatching(/f{64}, which is not in the schema store/) });
    for (const key of ['corrupt', 'not-avro', 'unknown-schema', 'corrupt-1mb']) {
      expect(logged('cannot decode record; dead-lettering it', (d) => d.source_offset)(deadFor(key)!), `log line for ${key}`).toBe(true);
    }
  });

  it('dead-letters a 1 MB record whole: the dead-letter topic takes what the input topic took', () => {
    const big = deadFor('corrupt-1mb')!;
    expect(big.code).toBe('SERDE_CORRUPT');
    expect(big.reason).not.toMatch(/original cut/);
    expect(big.original!.equals(Buffer.alloc(1_000_000, 0xab))).toBe(true);
  });

  it('dead-letters an output over its topic\'s limit as read from the broker (a 9 MB record) as OUTPUT_TOO_LARGE', () => {
    const tooLarge = deadFor(hugeAnswer.uuid)!;
    expect(tooLarge).toMatchObject({ code: 'OUTPUT_TOO_LARGE', reason: expect.stringMatching(/over the 8388608-byte limit \(max.message.bytes\) of topic .*out/) });
    expect(logged('output cannot be written; dead-lettering the record', (d) => d.source_offset)(tooLarge)).toBe(true);
    expect(dead).toHaveLength(5);
  });

  it('rejects an empty instruction and one megabytes long, with the rule and a cut copy of the record', () => {
    const byRule = new Map(rejected.map((r) => [r.rule, r]));
    expect(byRule.get('empty_instruction')).toMatchObject({ stage: 'respond', uuid: empty.uuid, reason: 'instruction is empty' });
    const long = byRule.get('instruction_too_long')!;
    expect(long).toMatchObject({ uuid: megabytes.uuid, reason: `instruction has ${megabytes.instruction.length} characters, more than 16000` });
    expect(long.record_json.length).toBeLessThan(2_000);
    expect(rejected).toHaveLength(2);
    for (const r of rejected) expect(stage.lines.some((l) => l.msg === 'record rejected' && l.rule === r.rule && l.offset === String(r.source_offset))).toBe(true);
  });

  it('passes records on with tag_failures when the judge answers garbage, and stays up for the good records sent afterwards', async () => {
    const responses = await readAll<Conversation>(s.kafka, serde, s.output, 'magpie.Conversation');
    expect(responses.map((r) => r.uuid).sort()).toEqual([...before, ...after].map((r) => r.uuid).sort());
    const judged = await readAll<Conversation>(s.kafka, serde, s.topology.stages.find((x) => x.name === 'judge')!.ports.out!, 'magpie.Conversation');
    expect(judged).toHaveLength(before.length + after.length);
    for (const j of judged) {
      expect(j.input_quality).toBeNull();
      expect(j.tag_failures).toEqual([{ tag: 'input_quality', reason: expect.stringMatching(/^unparseable output after 2 attempts/) }]);
    }
    expect(stage.running, stage.problems()).toBe(true);
  });
});
