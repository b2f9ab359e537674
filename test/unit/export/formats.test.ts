import { describe, expect, it } from 'vitest';
import { formatRecord, toDpo, toShareGpt } from '../../../src/export/formats.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation, makeInstruction } from '../../support/records.js';

/** MAGPIE.md section 8: the fields of the released Magpie datasets. */
const RELEASED_FIELDS = [
  'uuid', 'model', 'gen_input_configs', 'instruction', 'response', 'conversations', 'intent', 'knowledge', 'difficulty',
  'input_quality', 'quality_explanation', 'task_category', 'other_task_category', 'llama_guard_2', 'instruct_reward',
  'reward_model', 'language', 'min_neighbor_distance', 'repeat_count', 'min_similar_uuid', 'instruction_length', 'response_length',
  'task_category_generator', 'difficulty_generator', 'quality_generator',
];

function tagged(): Conversation {
  return {
    ...makeConversation(3, 'What is 2+2?', 'It is 4.'),
    conversations: [{ from: 'system', value: 'You are a math tutor.' }, { from: 'human', value: 'What is 2+2?' }, { from: 'gpt', value: 'It is 4.' }],
    task_category: 'Math', other_task_category: ['Reasoning'], intent: 'add numbers', knowledge: 'arithmetic', difficulty: 'very easy',
    input_quality: 'good', quality_explanation: 'clear', llama_guard_2: 'safe', instruct_reward: 1.25, reward_model: 'armo',
    language: 'en', min_neighbor_distance: 0.31, repeat_count: 0, min_similar_uuid: 'x', embedding: [0.1, 0.2], is_duplicate: false,
  };
}

describe('export formats', () => {
  it('ShareGPT has exactly the released Magpie fields, every tag kept, human/gpt turns only', () => {
    const row = toShareGpt(tagged());
    expect(Object.keys(row).sort()).toEqual([...RELEASED_FIELDS].sort());
    expect(row.gen_input_configs).toEqual({ temperature: 1, top_p: 1, input_generator: 'test', seed: null, pre_query_template: '<|im_start|>user\n' });
    expect(row.conversations).toEqual([{ from: 'human', value: 'What is 2+2?' }, { from: 'gpt', value: 'It is 4.' }]);
    expect(row).toMatchObject({ task_category: 'Math', other_task_category: ['Reasoning'], difficulty: 'very easy', instruct_reward: 1.25, min_neighbor_distance: 0.31, instruction_length: 12 });
  });

  it('OpenAI messages keep the system turn and map the speakers to roles', () => {
    expect(formatRecord('openai', { schema: 'magpie.Conversation', value: tagged() })).toEqual({
      row: { messages: [{ role: 'system', content: 'You are a math tutor.' }, { role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: 'It is 4.' }] },
    });
  });

  it('Alpaca is instruction, empty input, output', () => {
    expect(formatRecord('alpaca', { schema: 'magpie.Conversation', value: tagged() })).toEqual({ row: { instruction: 'What is 2+2?', input: '', output: 'It is 4.' } });
  });

  it('skips a record that is not a conversation, with a reason', () => {
    expect(formatRecord('sharegpt', { schema: 'magpie.Instruction', value: makeInstruction(1) })).toEqual({ skip: 'not_a_conversation' });
  });

  it('DPO from a preference pair, from chat-message responses, and skipped without chosen/rejected', () => {
    expect(formatRecord('dpo', { schema: 'magpie.PreferencePair', value: { instruction: 'Q?', chosen: 'good', rejected: 'bad' } })).toEqual({ row: { prompt: 'Q?', chosen: 'good', rejected: 'bad' } });
    const messages = (answer: string) => [{ role: 'user', content: 'Q?' }, { role: 'assistant', content: answer }];
    expect(toDpo({ chosen: messages('good'), rejected: messages('bad') })).toEqual({ prompt: 'Q?', chosen: 'good', rejected: 'bad' });
    expect(toDpo({ prompt: 'P', chosen: [{ from: 'gpt', value: 'a' }], rejected: 'b' })).toEqual({ prompt: 'P', chosen: 'a', rejected: 'b' });
    expect(formatRecord('dpo', { schema: 'magpie.Conversation', value: tagged() })).toEqual({ skip: 'no_preference_pair' });
  });
});
