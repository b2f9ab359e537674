import type { Conversation } from '../../src/serde/records.generated.js';
import { makeConversation } from '../../test/support/records.js';

const SENTENCES = [
  'Explain the difference between a process and a thread, with an example from a web server.',
  'Write a short poem about the sea at night that does not rhyme.',
  'How do I compute the median of a stream of numbers without storing them all?',
  'What are the main causes of inflation, and how do central banks respond to it?',
  'Give me three ideas for a birthday party for a seven-year-old who loves dinosaurs.',
  'Translate the sentence "the weather is lovely today" into French and German.',
  'Summarise the plot of a detective novel in which the narrator turns out to be the culprit.',
  'Why does ice float on water, and what would happen to lakes if it did not?',
];

/** An instruction-like sentence; `i` makes it distinct, lengths vary from one to three sentences. */
export function sentence(i: number): string {
  const a = SENTENCES[i % SENTENCES.length]!;
  const b = SENTENCES[(i * 7 + 3) % SENTENCES.length]!;
  return i % 3 === 0 ? `${a} (${i})` : i % 3 === 1 ? `${a} ${b} (${i})` : `${a} ${b} ${SENTENCES[(i * 5 + 1) % SENTENCES.length]!} (${i})`;
}

/** A tagged conversation of realistic size: ~200-character instruction, ~1,500-character answer, tags set. */
export function taggedConversation(i: number, embedding?: number[]): Conversation {
  const response = Array.from({ length: 12 }, (_, k) => SENTENCES[(i + k) % SENTENCES.length]!).join(' ');
  const c = makeConversation(i, sentence(i), response);
  return {
    ...c,
    task_category: 'Information seeking',
    other_task_category: ['Reasoning'],
    intent: 'The user wants to understand a concept.',
    knowledge: 'The model needs to know basic science.',
    difficulty: i % 5 === 0 ? 'hard' : 'easy',
    input_quality: i % 4 === 0 ? 'average' : 'good',
    quality_explanation: 'The query is clear and specific.',
    llama_guard_2: 'safe',
    instruct_reward: (i % 20) - 8,
    reward_model: 'sim-reward',
    language: i % 10 === 0 ? 'de' : 'en',
    min_neighbor_distance: (i % 50) / 100,
    min_similar_uuid: null,
    repeat_count: 0,
    is_duplicate: i % 17 === 0,
    embedding: embedding ?? null,
    embedding_model: embedding ? 'sentence-transformers/all-MiniLM-L6-v2' : null,
  };
}
