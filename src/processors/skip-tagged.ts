import { emitValue, type InputRecord, type Outcome, type Processor, type StageContext, type StateRestorer } from './stage.js';

function hasAll(value: unknown, fields: readonly string[]): boolean {
  if (value === null || typeof value !== 'object') return false;
  const record = value as Record<string, unknown>;
  return fields.every((f) => record[f] !== null && record[f] !== undefined);
}

/**
 * A tag stage that only tags what is not tagged yet: records that already have every one of `fields` pass
 * through untouched; the rest go to the processor `create` makes, on first need, so a replay over tagged
 * data never loads a model or calls a server. `onTagged` hears how many of each batch were tagged already.
 */
export function skipTagged<T>(fields: readonly string[], create: () => Processor<T, T> | Promise<Processor<T, T>>, onTagged?: (count: number) => void): Processor<T, T> {
  let inner: Promise<Processor<T, T>> | undefined;
  let restorer: StateRestorer | undefined;
  let initContext: StageContext | undefined;
  const start = async () => {
    const processor = await create();
    if (initContext && restorer) await processor.init?.(initContext, restorer);
    return processor;
  };
  return {
    init: async (ctx, state) => {
      initContext = ctx;
      restorer = state;
    },
    process: async (batch: InputRecord<T>[], ctx): Promise<Outcome<T>[]> => {
      const tagged = batch.map((r) => hasAll(r.value, fields));
      const todo = batch.filter((_, i) => !tagged[i]);
      const results = todo.length === 0 ? [] : await (await (inner ??= start())).process(todo, ctx);
      onTagged?.(batch.length - todo.length);
      let next = 0;
      return batch.map((r, i) => (tagged[i] ? emitValue(r.value, r.key) : results[next++]!));
    },
    close: async () => {
      await (await inner?.catch(() => undefined))?.close?.();
    },
  };
}
