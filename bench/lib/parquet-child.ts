/**
 * One Parquet writer in its own process (so its peak memory is its own), writing `n` ShareGPT training rows:
 *   node --import tsx bench/lib/parquet-child.ts <parquetjs|arrow-wasm> <n> <out.parquet> [rowGroup]
 * Prints {"seconds":…, "peakRssMb":…, "bytes":…}.
 */
import { stat } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { DurableFile } from '../../src/export/row-writer.js';
import { formatRecord } from '../../src/export/formats.js';
import { taggedConversation } from './records.js';

const [writer, count, out, group] = process.argv.slice(2);
const n = Number(count);
const rowGroup = Number(group ?? 10_000);

function row(i: number): Record<string, unknown> {
  const formatted = formatRecord('sharegpt', { schema: 'magpie.Conversation', value: taggedConversation(i) });
  if (!('row' in formatted)) throw new Error(`row ${i} not exportable`);
  return formatted.row as Record<string, unknown>;
}

async function withParquetjs(): Promise<void> {
  const file = await DurableFile.open(out!, 'parquet', 'sharegpt');
  for (let i = 0; i < n; i++) await file.write(row(i));
  await file.commit();
}

async function withArrowWasm(): Promise<void> {
  const arrow = await import('apache-arrow');
  const wasm = await import('parquet-wasm');
  const { Field, Float64, Int64, List, Struct, Utf8, Schema, RecordBatch, Table, makeBuilder, tableToIPC } = arrow;
  const f = (name: string, type: InstanceType<typeof Utf8> | InstanceType<typeof Float64> | InstanceType<typeof Int64> | InstanceType<typeof Struct> | InstanceType<typeof List>, nullable = false) => new Field(name, type, nullable);
  const str = (name: string, nullable = false) => f(name, new Utf8(), nullable);
  const fields = [
    str('uuid'), str('model'),
    f('gen_input_configs', new Struct([f('temperature', new Float64()), f('top_p', new Float64()), str('input_generator'), f('seed', new Int64(), true), str('pre_query_template')])),
    str('instruction'), str('response'),
    f('conversations', new List(f('item', new Struct([str('from'), str('value')])))),
    str('intent', true), str('knowledge', true), str('difficulty', true), str('input_quality', true), str('quality_explanation', true), str('task_category', true),
    f('other_task_category', new List(str('item'))),
    str('llama_guard_2', true), f('instruct_reward', new Float64(), true), str('reward_model', true), str('language', true),
    f('min_neighbor_distance', new Float64(), true), f('repeat_count', new Int64(), true), str('min_similar_uuid', true),
    f('instruction_length', new Int64()), f('response_length', new Int64()),
  ];
  const schema = new Schema(fields);
  const big = (v: unknown) => (v === null || v === undefined ? null : BigInt(v as number));
  const props = new wasm.WriterPropertiesBuilder().setCompression(wasm.Compression.ZSTD).setMaxRowGroupSize(rowGroup).build();
  let next = 0;
  // Row groups are built and handed to the writer one at a time: memory holds one group, not the file.
  const batches = new ReadableStream({
    pull(controller) {
      if (next >= n) {
        controller.close();
        return;
      }
      const builder = makeBuilder({ type: new Struct(fields), nullValues: [null, undefined] });
      for (const end = Math.min(n, next + rowGroup); next < end; next++) {
        const r = row(next) as Record<string, unknown> & { gen_input_configs: Record<string, unknown> };
        builder.append({
          ...r,
          gen_input_configs: { ...r.gen_input_configs, seed: big(r.gen_input_configs.seed) },
          repeat_count: big(r.repeat_count), instruction_length: big(r.instruction_length), response_length: big(r.response_length),
        } as never);
      }
      const batch = new RecordBatch(schema, builder.finish().toVector().data[0]!);
      // The wasm table is freed by hand: wasm memory only grows, and a group left to the GC stays in it.
      const table = wasm.Table.fromIPCStream(tableToIPC(new Table([batch]), 'stream'));
      for (const b of table.recordBatches()) controller.enqueue(b);
      table.free();
    },
  });
  const bytes = await wasm.transformParquetStream(batches, props);
  const handle = await open(out!, 'w');
  await bytes.pipeTo(Writable.toWeb(handle.createWriteStream()) as WritableStream);
}

const started = process.hrtime.bigint();
if (writer === 'parquetjs') await withParquetjs();
else if (writer === 'arrow-wasm') await withArrowWasm();
else throw new Error(`unknown writer ${writer}`);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(`${JSON.stringify({ seconds, peakRssMb: process.resourceUsage().maxRSS / 1024, bytes: (await stat(out!)).size })}\n`);
