import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Template } from '@huggingface/jinja';
import { ConfigError, errorMessage } from '../core/errors.js';
import type { ChatMessage, InferenceBackend } from './backend.js';
import {
  ChatTemplate,
  derivedTemplateOrigin,
  resolveTemplate,
  TEMPLATE_FAMILIES,
  type ResolvedTemplate,
  type TemplateConfig,
} from './templates.js';

/**
 * Magpie from any chat model's own template: the model's Jinja chat template is rendered around sentinel
 * messages and cut where the sentinel user text lands, which gives the pre-query template, the system-prompt
 * variant, the multi-turn append, the generation prompt and the BOS handling without a hand-kept entry.
 */

/** A model's chat template and the tokenizer facts around it (GGUF metadata or tokenizer_config.json). */
export interface ModelChatTemplate {
  /** Where it came from, for messages (a file path or a backend id). */
  origin: string;
  /** Names the derived template (recorded as template_family). */
  name: string;
  /** The Jinja source. */
  chatTemplate: string;
  bosToken: string | null;
  eosToken: string | null;
  /** Every special (control) token of the tokenizer, with its id where known. */
  specialTokens: ReadonlyMap<string, number | undefined>;
  /** Vocabulary ids of `#` … `####`, where the vocabulary is known. */
  markdownHeaderTokenIds?: number[];
}

const SYSTEM_PROBE = 'MagpieSentinelSystemText';
const USER_PROBE = 'MagpieSentinelProbeUser';
const BOS_PROBE = 'MagpieSentinelBos';
/** Special tokens that end a turn, a message or a document: a model that writes one has finished. */
const END_OF_TEXT = /^<\|?(?:end_?of_?text|endoftext|eos|eot_id|eom_id)\|?>$|^<\/s>$/i;

function underivable(source: ModelChatTemplate, reason: string): ConfigError {
  return new ConfigError(
    `${source.origin}: cannot derive the Magpie templates from the model's chat template (${reason}); ` +
      `name a family instead, e.g. template: chatml (one of ${TEMPLATE_FAMILIES.join(', ')}), or give a custom template`,
    { origin: source.origin },
  );
}

/** The ChatTemplate a model's own Jinja chat template describes. Throws a ConfigError that says to name a family. */
export function deriveTemplate(source: ModelChatTemplate): ChatTemplate {
  let jinja: Template;
  try {
    jinja = new Template(source.chatTemplate);
  } catch (err) {
    throw underivable(source, `it does not parse: ${errorMessage(err)}`);
  }
  const renderJinja = (messages: readonly ChatMessage[], addGenerationPrompt: boolean, bosToken = source.bosToken ?? '') =>
    jinja.render({ bos_token: bosToken, eos_token: source.eosToken ?? '', messages: messages.map((m) => ({ ...m })), add_generation_prompt: addGenerationPrompt });

  let lone: string;
  try {
    lone = renderJinja([{ role: 'user', content: USER_PROBE }], false);
  } catch (err) {
    throw underivable(source, `it rejects a conversation of one user message: ${errorMessage(err)}`);
  }
  if (lone.split(USER_PROBE).length !== 2) throw underivable(source, 'a lone user message does not appear exactly once in its output');

  // A template without a system role (Gemma) rejects or drops one: system text then opens the next user turn.
  let systemRole = false;
  try {
    systemRole = renderJinja([{ role: 'system', content: SYSTEM_PROBE }, { role: 'user', content: USER_PROBE }], false).includes(SYSTEM_PROBE);
  } catch {
    systemRole = false;
  }
  const render = (messages: readonly ChatMessage[], addGenerationPrompt: boolean) =>
    renderJinja(systemRole ? messages : mergeSystem(messages), addGenerationPrompt);

  const probes = [lone, render([{ role: 'user', content: USER_PROBE }], true), render([{ role: 'system', content: SYSTEM_PROBE }, { role: 'user', content: USER_PROBE }], true)];
  try {
    probes.push(render([{ role: 'user', content: USER_PROBE }, { role: 'assistant', content: USER_PROBE }, { role: 'user', content: USER_PROBE }], true));
  } catch (err) {
    throw underivable(source, `it rejects a user-assistant-user conversation: ${errorMessage(err)}`);
  }
  // Whether the template writes the BOS itself: SmolLM2's BOS is <|im_start|>, which opens its turns too.
  const writesBos = renderJinja([{ role: 'user', content: USER_PROBE }], false, BOS_PROBE).startsWith(BOS_PROBE);
  const bos = writesBos ? source.bosToken : null;
  const written = [...source.specialTokens.keys()].filter((t) => t.length > 0 && probes.some((p) => occurrences(p, t) > (t === bos ? 1 : 0)));
  const ends = [...source.specialTokens.keys()].filter((t) => END_OF_TEXT.test(t));
  const stop = [...new Set([...written, ...(source.eosToken ? [source.eosToken] : []), ...ends])];
  const stopTokenIds = stop.map((t) => source.specialTokens.get(t)).filter((id): id is number => id !== undefined);
  try {
    return new ChatTemplate(
      {
        name: `auto:${source.name}`,
        bos,
        stop,
        stopTokenIds,
        assistantStop: ['assistant'],
        specialTokens: [...source.specialTokens.keys()],
        ...(source.markdownHeaderTokenIds?.length ? { markdownHeaderTokenIds: source.markdownHeaderTokenIds } : {}),
      },
      render,
    );
  } catch (err) {
    throw underivable(source, errorMessage(err));
  }
}

function occurrences(text: string, token: string): number {
  return text.split(token).length - 1;
}

/** System messages folded into the following user message, as for the registry's formats without a system role. */
function mergeSystem(messages: readonly ChatMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  let pending: string | undefined;
  for (const m of messages) {
    if (m.role === 'system') pending = pending === undefined ? m.content : `${pending}\n\n${m.content}`;
    else if (m.role === 'user' && pending !== undefined) {
      out.push({ role: 'user', content: `${pending}\n\n${m.content}` });
      pending = undefined;
    } else out.push(m);
  }
  if (pending !== undefined) throw new TypeError('a system message needs a following user message (this template has no system role)');
  return out;
}

const MARKDOWN_HEADERS = ['#', '##', '###', '####'];

/** GGUF metadata as node-llama-cpp reads it (the fields used here). */
export interface GgufTokenizerMetadata {
  chat_template?: string;
  ggml?: {
    tokens?: readonly string[];
    token_type?: readonly number[];
    bos_token_id?: number;
    eos_token_id?: number;
  };
}

/** The chat template of a GGUF's metadata; undefined when the GGUF carries none. */
export function ggufChatTemplate(tokenizer: GgufTokenizerMetadata | undefined, origin: string, name: string): ModelChatTemplate | undefined {
  const chatTemplate = tokenizer?.chat_template;
  if (!chatTemplate) return undefined;
  const tokens = tokenizer.ggml?.tokens ?? [];
  const types = tokenizer.ggml?.token_type ?? [];
  const special = new Map<string, number>();
  // llama.cpp token type 3: a control token (the chat markup, BOS/EOS and the like).
  types.forEach((type, id) => {
    if (type === 3 && tokens[id] !== undefined) special.set(tokens[id], id);
  });
  const tokenAt = (id: number | undefined) => (id === undefined ? null : (tokens[id] ?? null));
  const vocab = new Map(tokens.map((t, id) => [t, id]));
  const headers = MARKDOWN_HEADERS.map((h) => vocab.get(h)).filter((id): id is number => id !== undefined);
  return {
    origin,
    name,
    chatTemplate,
    bosToken: tokenAt(tokenizer.ggml?.bos_token_id),
    eosToken: tokenAt(tokenizer.ggml?.eos_token_id),
    specialTokens: special,
    ...(headers.length === MARKDOWN_HEADERS.length ? { markdownHeaderTokenIds: headers } : {}),
  };
}

const tokenContent = (t: unknown): string | null =>
  typeof t === 'string' ? t : t && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string' ? (t as { content: string }).content : null;

/** The chat template of a Hugging Face tokenizer_config.json (its default one when it names several). */
export function tokenizerConfigChatTemplate(config: Record<string, unknown>, origin: string, name: string): ModelChatTemplate | undefined {
  const raw = config.chat_template;
  const chatTemplate =
    typeof raw === 'string'
      ? raw
      : Array.isArray(raw)
        ? (raw as { name?: string; template?: string }[]).find((t) => t.name === 'default')?.template
        : undefined;
  if (!chatTemplate) return undefined;
  const special = new Map<string, number | undefined>();
  const added = (config.added_tokens_decoder ?? {}) as Record<string, { content?: string; special?: boolean }>;
  for (const [id, token] of Object.entries(added)) if (token.special && token.content) special.set(token.content, Number(id));
  const bosToken = tokenContent(config.bos_token);
  const eosToken = tokenContent(config.eos_token);
  for (const t of [bosToken, eosToken, tokenContent(config.unk_token), tokenContent(config.pad_token)]) if (t && !special.has(t)) special.set(t, undefined);
  return { origin, name, chatTemplate, bosToken, eosToken, specialTokens: special };
}

/** Reads the chat template of a GGUF file or a tokenizer_config.json. */
export async function readModelChatTemplate(path: string): Promise<ModelChatTemplate> {
  const found = /\.gguf$/i.test(path) ? await readGguf(path) : await readTokenizerConfig(path);
  if (!found) throw new ConfigError(`${path}: no chat template in it; name a template family instead`, { path });
  return found;
}

async function readGguf(path: string): Promise<ModelChatTemplate | undefined> {
  // Loaded on demand: reading a tokenizer_config.json never loads the native runtime.
  const { readGgufFileInfo } = await import('node-llama-cpp');
  let metadata: { tokenizer?: GgufTokenizerMetadata } | undefined;
  try {
    metadata = (await readGgufFileInfo(path, { readTensorInfo: false })).metadata as { tokenizer?: GgufTokenizerMetadata };
  } catch (err) {
    throw new ConfigError(`${path}: cannot read the GGUF (${errorMessage(err)})`, { path });
  }
  return ggufChatTemplate(metadata?.tokenizer, path, basename(path).replace(/\.gguf$/i, ''));
}

async function readTokenizerConfig(path: string): Promise<ModelChatTemplate | undefined> {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${path}: cannot read it as a tokenizer_config.json (${errorMessage(err)})`, { path });
  }
  return tokenizerConfigChatTemplate(config, path, basename(dirname(path)) || path);
}

/**
 * Resolves a stage's template config: a registry family or custom template as is; `auto` (the backend's own
 * model) or `from: <path>` by deriving the model's chat template.
 */
export async function loadTemplate(config: TemplateConfig, backend?: InferenceBackend): Promise<ResolvedTemplate> {
  const origin = derivedTemplateOrigin(config);
  if (origin === undefined) return resolveTemplate(config);
  let source: ModelChatTemplate | undefined;
  if (origin === 'model') {
    source = await backend?.modelChatTemplate?.();
    if (!source) {
      throw new ConfigError(
        `template: auto needs the model's chat template, and backend ${backend?.id ?? '(none)'} has none to give; ` +
          'set template.from to its tokenizer_config.json or GGUF, or name a template family',
        { backend: backend?.id },
      );
    }
  } else {
    source = await readModelChatTemplate(origin);
  }
  return resolveTemplate(config, deriveTemplate(source));
}
