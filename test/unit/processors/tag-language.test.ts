import { describe, expect, it } from 'vitest';
import { detectLanguage, tagLanguage } from '../../../src/processors/tag-language.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { conversations, deps, inputs, mainValues, stageContext } from './harness.js';

describe('tag-language', () => {
  it.each([
    ['en', 'How do I reverse a linked list in Python without recursion?'],
    ['zh', '如何用Python反转链表？'],
    ['de', 'Wie kann ich eine verkettete Liste in Python umkehren?'],
    ['es', '¿Cómo invierto una lista enlazada en Python?'],
    ['fr', 'Comment inverser une liste chaînée en Python ?'],
    ['ru', 'Как развернуть связанный список в Python?'],
    ['ja', 'Pythonで連結リストを逆にするにはどうすればよいですか？'],
    ['ko', '파이썬에서 연결 리스트를 뒤집는 방법은?'],
    ['und', 'Hi!'],
  ])('%s ← %s', (code, text) => {
    expect(detectLanguage(text, { minLength: 10 })).toBe(code);
  });

  it('keeps the ISO 639-3 code of a language without a two-letter one', () => {
    expect(detectLanguage('Ang mga bata ay naglalaro sa labas ng bahay habang umuulan.', { minLength: 10, only: ['ceb'] })).toBe('ceb');
  });

  it('sets language on every record of a batch', async () => {
    const stage = tagLanguage.create(tagLanguage.config.parse({}), deps());
    const out = mainValues<Conversation>(await stage.process(inputs(conversations(['Explain the rules of chess to a child, please.', 'ok'])), stageContext()));
    expect(out.map((v) => v.language)).toEqual(['en', 'und']);
  });
});
