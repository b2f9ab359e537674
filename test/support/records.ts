import type { Kafka } from 'kafkajs';
import type { Conversation, Instruction } from '../../src/serde/records.generated.js';
import type { RecordSerde } from '../../src/serde/serde.js';
import type { SchemaName } from '../../src/serde/schemas.js';
import { readTopic } from '../../src/kafka/read-topic.js';
import { createProducer } from '../../src/kafka/client.js';
import { fetchPartitionCounts } from '../../src/kafka/admin.js';
import { DEFAULT_MAX_MESSAGE_BYTES, sendLanes, type OutboundMessage } from '../../src/kafka/send-plan.js';

export function makeInstruction(i: number, text = `Test instruction number ${i}?`): Instruction {
  return {
    uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    model: 'test-model',
    gen_input_configs: { temperature: 1, top_p: 1, max_tokens: 128, input_generator: 'test', seed: null, template_family: 'chatml', pre_query_template: '<|im_start|>user\n', system_prompt: null, stop: [], stop_token_ids: [], system_prompt_key: null, decoding_key: null },
    instruction: text,
    finish_reason: 'stop',
    instruction_tokens: 8,
    created_at: 1_750_000_000_000 + i,
  };
}

export function makeConversation(i: number, instruction = `Test instruction number ${i}?`, response = `Answer ${i}.`): Conversation {
  const ins = makeInstruction(i, instruction);
  return {
    uuid: ins.uuid,
    model: ins.model,
    gen_input_configs: ins.gen_input_configs,
    instruction,
    response,
    reasoning: null,
    conversations: [{ from: 'human', value: instruction }, { from: 'gpt', value: response }],
    gen_response_configs: { temperature: 0, top_p: 1, max_tokens: 256, repetition_penalty: 1, output_generator: 'test' },
    instruction_finish_reason: 'stop',
    response_finish_reason: 'stop',
    instruction_tokens: 8,
    response_tokens: 4,
    instruction_length: instruction.length,
    response_length: response.length,
    task_category: null, other_task_category: [], intent: null, knowledge: null, difficulty: null,
    input_quality: null, quality_explanation: null, llama_guard_2: null, instruct_reward: null, reward_model: null,
    base_output: null, base_reward: null, reward_difference: null,
    language: null, task_category_generator: null, difficulty_generator: null, quality_generator: null,
    embedding: null, embedding_model: null, min_neighbor_distance: null, min_similar_uuid: null,
    repeat_count: null, is_duplicate: null, tag_failures: [], created_at: ins.created_at,
  };
}

/** Encodes and writes values in batches; returns the keys written. */
export async function produceRecords(kafka: Kafka, serde: RecordSerde, topic: string, schema: SchemaName, values: { uuid: string }[], options: { raw?: { key: string; value: Buffer; headers?: Record<string, string> }[] } = {}): Promise<void> {
  const producer = createProducer(kafka, { idempotent: true });
  // One partition per send, as the project's producers do (planLanes): a retried send is never written twice.
  const admin = kafka.admin();
  await Promise.all([producer.connect(), admin.connect()]);
  try {
    const partitions = await fetchPartitionCounts(admin, [topic]);
    const send = (messages: OutboundMessage[]) => sendLanes((topicMessages) => producer.sendBatch({ topicMessages, acks: -1 }), new Map([[topic, messages]]), () => DEFAULT_MAX_MESSAGE_BYTES, (t) => partitions.get(t));
    for (let i = 0; i < values.length; i += 1000) {
      const messages = await Promise.all(values.slice(i, i + 1000).map(async (v) => {
        const enc = await serde.encode(schema, v, topic);
        return { key: v.uuid, value: enc.value, headers: enc.headers };
      }));
      await send(messages);
    }
    if (options.raw?.length) await send(options.raw.map((m) => ({ ...m, headers: m.headers ?? {} })));
  } finally {
    await Promise.all([producer.disconnect(), admin.disconnect()]);
  }
}

/** Every committed record of a topic, decoded with its writer's schema name. */
export async function readAll<T = Record<string, unknown>>(kafka: Kafka, serde: RecordSerde, topic: string, schema: SchemaName): Promise<T[]> {
  const out: T[] = [];
  await readTopic(kafka, topic, async (raw) => {
    out.push(await serde.decode<T>(schema, raw.value, raw.headers));
  });
  return out;
}

/** Polls `check` until it returns true or the timeout passes. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 120_000, everyMs = 500): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
