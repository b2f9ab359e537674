import { createSerde } from '../../src/serde/serde.js';
import type { SchemaName } from '../../src/serde/schemas.js';
import { makeInstruction } from '../../test/support/records.js';
import { compare, measurement, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';
import { taggedConversation } from '../lib/records.js';

const COUNT = 1_000;

/** Avro (the project's serde: validation, schema headers, resolving decoder) against JSON text for the same records. */
export const serdeSuite: Suite = {
  name: 'serde',
  description: 'Avro encode/decode records/s through RecordSerde vs JSON.stringify/parse of the same records',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const serde = createSerde();
    const embedding = Array.from({ length: 384 }, (_, d) => Math.sin(d) / 14);
    const cases: { label: string; schema: SchemaName; values: unknown[] }[] = [
      { label: 'Instruction', schema: 'magpie.Instruction', values: Array.from({ length: COUNT }, (_, i) => makeInstruction(i)) },
      { label: 'Conversation (tagged)', schema: 'magpie.Conversation', values: Array.from({ length: COUNT }, (_, i) => taggedConversation(i)) },
      { label: 'Conversation + 384-d embedding', schema: 'magpie.Conversation', values: Array.from({ length: COUNT }, (_, i) => taggedConversation(i, embedding)) },
    ];
    const rounds = ctx.quick ? 2 : 5;
    const roundMs = ctx.quick ? 300 : 1_000;
    const out: Measurement[] = [];
    for (const c of cases) {
      const encoded = await Promise.all(c.values.map((v) => serde.encode(c.schema, v)));
      const json = c.values.map((v) => Buffer.from(JSON.stringify(v)));
      const avroBytes = encoded.reduce((a, e) => a + e.value.length, 0) / COUNT;
      const jsonBytes = json.reduce((a, b) => a + b.length, 0) / COUNT;
      const enc = await compare(
        async () => {
          for (const v of c.values) await serde.encode(c.schema, v);
        },
        () => {
          for (const v of c.values) Buffer.from(JSON.stringify(v));
        },
        COUNT,
        { rounds, roundMs },
      );
      out.push(measurement('serde', `Avro encode, ${c.label}`, enc.candidate, 'records/s', { name: 'JSON.stringify → Buffer', value: enc.baseline }, { avroBytes: Math.round(avroBytes), jsonBytes: Math.round(jsonBytes) }));
      const dec = await compare(
        async () => {
          for (const e of encoded) await serde.decode(c.schema, e.value, e.headers);
        },
        () => {
          for (const b of json) JSON.parse(b.toString('utf8'));
        },
        COUNT,
        { rounds, roundMs },
      );
      out.push(measurement('serde', `Avro decode, ${c.label}`, dec.candidate, 'records/s', { name: 'JSON.parse of a Buffer', value: dec.baseline }, { avroBytes: Math.round(avroBytes), jsonBytes: Math.round(jsonBytes) }));
      ctx.progress(`serde ${c.label}: encode ${enc.candidate.toFixed(0)}/s vs JSON ${enc.baseline.toFixed(0)}/s; decode ${dec.candidate.toFixed(0)}/s vs ${dec.baseline.toFixed(0)}/s; ${avroBytes.toFixed(0)} B vs ${jsonBytes.toFixed(0)} B`);
    }
    await serde.close();
    return out;
  },
};
