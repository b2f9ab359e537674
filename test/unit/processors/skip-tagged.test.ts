import { describe, expect, it } from 'vitest';
import { skipTagged } from '../../../src/processors/skip-tagged.js';
import { emitValue, type Processor } from '../../../src/processors/stage.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';
import { inputs, mainValues, stageContext } from './harness.js';

describe('skipTagged', () => {
  it('passes tagged records through untouched, tags the rest in order, and creates the tagger only when needed', async () => {
    const seen: string[] = [];
    let created = 0;
    const tagger = (): Processor<Conversation, Conversation> => {
      created++;
      return { process: async (batch) => batch.map((r) => (seen.push(r.value.uuid), emitValue({ ...r.value, task_category: 'Math' }, r.key))) };
    };
    let skipped = 0;
    const stage = skipTagged(['task_category'], tagger, (n) => (skipped += n));
    await stage.init?.(stageContext(), { topicOf: () => 'changelog', restore: async () => ({ records: 0, next: 0n }) });

    const allTagged = [makeConversation(1), makeConversation(2)].map((c) => ({ ...c, task_category: 'Coding & Debugging' }));
    expect(mainValues<Conversation>(await stage.process(inputs(allTagged), stageContext()))).toEqual(allTagged);
    expect(created).toBe(0);

    const mixed = [{ ...makeConversation(3), task_category: 'Planning' }, makeConversation(4), makeConversation(5)];
    const out = mainValues<Conversation>(await stage.process(inputs(mixed), stageContext()));
    expect(out.map((c) => c.task_category)).toEqual(['Planning', 'Math', 'Math']);
    expect(out[0]).toBe(mixed[0]);
    expect(seen).toEqual([mixed[1]!.uuid, mixed[2]!.uuid]);
    expect(created).toBe(1);
    expect(skipped).toBe(3);
  });
});
