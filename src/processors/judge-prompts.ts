import { z } from 'zod';
import type { ChatMessage } from '../inference/backend.js';

/** Magpie's task categories (section 5 of MAGPIE.md), spelled as in the released datasets. */
export const TASK_CATEGORIES = [
  'Information seeking', 'Reasoning', 'Planning', 'Editing', 'Coding & Debugging', 'Math',
  'Role playing', 'Data analysis', 'Creative writing', 'Advice seeking', 'Brainstorming', 'Others',
] as const;
export const DIFFICULTY_LEVELS = ['very easy', 'easy', 'medium', 'hard', 'very hard'] as const;
export const INPUT_QUALITY_LEVELS = ['very poor', 'poor', 'average', 'good', 'excellent'] as const;

export type JudgeTask = 'task_category' | 'difficulty' | 'input_quality';

/** One of `values`, matched without regard to case or surrounding spaces, returned in its canonical spelling. */
function oneOf<const V extends readonly [string, ...string[]]>(values: V) {
  const canonical = new Map(values.map((v) => [v.toLowerCase(), v]));
  return z
    .string()
    .transform((s, ctx) => {
      const found = canonical.get(s.trim().toLowerCase());
      if (found === undefined) ctx.addIssue({ code: 'custom', message: `'${s}' is not one of ${values.join(', ')}` });
      return found as V[number];
    });
}

const enumSchema = (values: readonly string[]) => ({ type: 'string', enum: [...values] });

const quoted = (instruction: string) => `## User query\n<query>\n${instruction}\n</query>`;

const CATEGORY_GUIDE = `- Information seeking: wants facts, definitions or explanations about a topic.
- Reasoning: asks for logical deduction, puzzles, or working through an argument step by step.
- Planning: wants a plan, schedule, itinerary or strategy towards a goal.
- Editing: gives text to rewrite, proofread, shorten, translate in style, or restructure.
- Coding & Debugging: wants code written, explained, reviewed or fixed.
- Math: calculations, equations, proofs or other mathematical problems.
- Role playing: asks the assistant to act as a character, persona or in a scenario.
- Data analysis: wants data, tables or statistics interpreted, transformed or summarised.
- Creative writing: stories, poems, lyrics, scripts or other original writing.
- Advice seeking: wants recommendations on a personal, professional or practical decision.
- Brainstorming: wants many ideas, names or options generated.
- Others: fits none of the above.`;

/** Prompt, JSON schema for constrained decoding, and the parser of each judge task. */
export const JUDGE_TASKS = {
  task_category: {
    messages: (instruction: string): ChatMessage[] => [
      {
        role: 'user',
        content: `Decide what kind of help the user below is asking an AI assistant for.

${quoted(instruction)}

## Categories
${CATEGORY_GUIDE}

## Answer
Reply with one JSON object and nothing else:
{"primary_tag": "<the category that fits best>", "other_tags": ["<any other categories that also fit>"]}`,
      },
    ],
    jsonSchema: {
      type: 'object',
      // maxItems bounds constrained decoding: a small model otherwise repeats a tag until max_tokens.
      properties: { primary_tag: enumSchema(TASK_CATEGORIES), other_tags: { type: 'array', items: enumSchema(TASK_CATEGORIES), maxItems: 3 } },
      required: ['primary_tag', 'other_tags'],
      additionalProperties: false,
    },
    output: z.object({ primary_tag: oneOf(TASK_CATEGORIES), other_tags: z.array(oneOf(TASK_CATEGORIES)).default([]) }),
  },
  difficulty: {
    messages: (instruction: string): ChatMessage[] => [
      {
        role: 'user',
        content: `Judge how hard it is for an AI assistant to answer the user below well.

${quoted(instruction)}

## Steps
1. intent: say in one sentence what the user wants.
2. knowledge: say in one sentence what knowledge or skills an answer needs.
3. difficulty: rate it on this scale: ${DIFFICULTY_LEVELS.join(', ')}.

## Answer
Reply with one JSON object and nothing else:
{"intent": "The user wants to ...", "knowledge": "An answer needs ...", "difficulty": "<${DIFFICULTY_LEVELS.join('|')}>"}`,
      },
    ],
    jsonSchema: {
      type: 'object',
      properties: { intent: { type: 'string' }, knowledge: { type: 'string' }, difficulty: enumSchema(DIFFICULTY_LEVELS) },
      required: ['intent', 'knowledge', 'difficulty'],
      additionalProperties: false,
    },
    output: z.object({ intent: z.string().trim().min(1), knowledge: z.string().trim().min(1), difficulty: oneOf(DIFFICULTY_LEVELS) }),
  },
  input_quality: {
    messages: (instruction: string): ChatMessage[] => [
      {
        role: 'user',
        content: `Rate the user query below as a request to an AI assistant: is it clear, specific and coherent, and does it carry the context needed for a full answer? Judge the query only, not how hard it is to answer.

${quoted(instruction)}

## Scale
- very poor: unclear, incoherent, or missing essential information.
- poor: vague, or missing important details or context.
- average: understandable, but an answer would need some guessing or clarification.
- good: clear and specific; at most minor gaps.
- excellent: clear, specific and well-formed, with all the context an answer needs.

## Answer
Reply with one JSON object and nothing else:
{"explanation": "<one or two sentences on its strengths and weaknesses>", "input_quality": "<${INPUT_QUALITY_LEVELS.join('|')}>"}`,
      },
    ],
    jsonSchema: {
      type: 'object',
      properties: { explanation: { type: 'string' }, input_quality: enumSchema(INPUT_QUALITY_LEVELS) },
      required: ['explanation', 'input_quality'],
      additionalProperties: false,
    },
    output: z.object({ explanation: z.string().trim().min(1), input_quality: oneOf(INPUT_QUALITY_LEVELS) }),
  },
} as const;

/** Llama Guard 2's hazard categories (MLCommons taxonomy), the codes its verdicts name. */
export const SAFETY_CATEGORIES = [
  ['S1', 'Violent Crimes', 'helps plan or carry out violence against people or animals, including terrorism'],
  ['S2', 'Non-Violent Crimes', 'helps commit fraud, theft, hacking, drug crimes or other non-violent crimes'],
  ['S3', 'Sex Crimes', 'helps commit sexual assault, trafficking or harassment'],
  ['S4', 'Child Exploitation', 'sexualises minors or helps abuse them'],
  ['S5', 'Specialized Advice', 'gives specialised medical, legal or financial advice that could cause harm'],
  ['S6', 'Privacy', 'exposes sensitive, non-public information about a private person'],
  ['S7', 'Intellectual Property', 'infringes copyright, trademarks or other intellectual property'],
  ['S8', 'Indiscriminate Weapons', 'helps make chemical, biological, radiological, nuclear or high-yield explosive weapons'],
  ['S9', 'Hate', 'demeans people for a protected characteristic such as race, religion, gender or disability'],
  ['S10', 'Self-Harm', 'encourages or helps suicide, self-injury or disordered eating'],
  ['S11', 'Sexual Content', 'contains explicit sexual content'],
] as const;

/**
 * A Llama-Guard-style moderation prompt for a general chat model: one user message holding the policy and
 * the conversation, asking for `safe`, or `unsafe` and the violated category codes on the next line.
 */
export function safetyPromptMessages(instruction: string, response: string | null, assess: 'user' | 'agent'): ChatMessage[] {
  const role = assess === 'user' ? 'User' : 'Agent';
  const policy = SAFETY_CATEGORIES.map(([code, name, text]) => `${code}: ${name}: content that ${text}.`).join('\n');
  const turns = [`User: ${instruction}`, ...(response === null ? [] : [`Agent: ${response}`])].join('\n\n');
  return [
    {
      role: 'user',
      content: `You are a content-safety classifier. Decide whether the last ${role} message of the conversation below breaks the safety policy.

[POLICY]
${policy}
[/POLICY]

[CONVERSATION]
${turns}
[/CONVERSATION]

Judge only the last ${role} message. Answer in exactly this format:
- line 1: safe or unsafe
- line 2, only when unsafe: the violated category codes, comma-separated (e.g. S2 or S1,S9)`,
    },
  ];
}

/** Parses a Llama Guard verdict into the llama_guard_2 field: `safe`, `unsafe`, or `unsafe\nS<n>[,S<m>…]`. */
export function parseSafetyVerdict(text: string): string {
  const match = /^\s*(safe|unsafe)\b([\s\S]*)$/i.exec(text);
  if (!match) throw new Error('the verdict does not start with safe or unsafe');
  if (match[1]!.toLowerCase() === 'safe') return 'safe';
  // Codes are on the line after the verdict; later lines may be commentary that mentions others.
  const codeLine = match[2]!.trim().split('\n')[0] ?? '';
  const codes = [...new Set([...codeLine.matchAll(/\bS(\d{1,2})\b/g)].map((m) => `S${Number(m[1])}`))];
  return codes.length === 0 ? 'unsafe' : `unsafe\n${codes.join(',')}`;
}

/** The JSON object in a judge's answer: the whole text, or the span from the first `{` to the last `}`. */
export function extractJson(text: string): unknown {
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end < start) throw new Error('no JSON object in the output');
  return JSON.parse(text.slice(start, end + 1));
}
