import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measurement, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ROW_GROUP = 10_000;

interface WriteResult {
  seconds: number;
  peakRssMb: number;
  bytes: number;
}

function write(writer: 'parquetjs' | 'arrow-wasm', n: number, file: string): WriteResult {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/lib/parquet-child.ts'), writer, String(n), file, String(ROW_GROUP)], { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').at(-1)!) as WriteResult;
}

/** pyarrow (the C++ reader training jobs use) reads both files; their rows must be the same, in order. */
const READ_BACK = `
import sys, json, pyarrow.parquet as pq
a, b = (pq.read_table(f) for f in sys.argv[1:3])
ra, rb = a.to_pylist(), b.to_pylist()
same = sum(1 for x, y in zip(ra, rb) if x == y)
meta = [pq.ParquetFile(f).metadata for f in sys.argv[1:3]]
print(json.dumps({"rows": [a.num_rows, b.num_rows], "same": same, "rowGroups": [m.num_row_groups for m in meta],
                  "compression": [m.row_group(0).column(0).compression for m in meta]}))
`;

export const parquetSuite: Suite = {
  name: 'parquet',
  description: 'ShareGPT training shards: Apache Arrow + parquet-wasm (zstd, streamed row groups) vs the @dsnp/parquetjs writer the export uses: time, size, peak memory; both read back with pyarrow',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    const n = ctx.quick ? 20_000 : 200_000;
    const dir = await mkdtemp(path.join(tmpdir(), 'magpie-bench-parquet-'));
    try {
      const files = { parquetjs: path.join(dir, 'parquetjs.parquet'), arrow: path.join(dir, 'arrow-wasm.parquet') };
      ctx.progress(`parquet: ${n} rows with @dsnp/parquetjs (snappy, as magpie export writes them)`);
      const base = write('parquetjs', n, files.parquetjs);
      ctx.progress(`parquet: ${n} rows with apache-arrow + parquet-wasm (zstd, row groups of ${ROW_GROUP})`);
      const cand = write('arrow-wasm', n, files.arrow);
      const check = JSON.parse(execFileSync('python3', ['-c', READ_BACK, files.parquetjs, files.arrow], { encoding: 'utf8', maxBuffer: 1 << 20 })) as { rows: number[]; same: number; rowGroups: number[]; compression: string[] };
      if (check.rows[0] !== n || check.rows[1] !== n || check.same !== n) throw new Error(`read back with pyarrow: ${JSON.stringify(check)}; expected ${n} identical rows`);
      ctx.progress(`parquet: parquetjs ${base.seconds.toFixed(1)} s ${(base.bytes / 1e6).toFixed(1)} MB ${base.peakRssMb.toFixed(0)} MB RSS; arrow-wasm ${cand.seconds.toFixed(1)} s ${(cand.bytes / 1e6).toFixed(1)} MB ${cand.peakRssMb.toFixed(0)} MB RSS; pyarrow read ${n} identical rows from both`);
      const details = { rows: n, rowGroups: check.rowGroups, compression: check.compression, pyarrowIdenticalRows: check.same };
      const baseline = (value: number) => ({ name: '@dsnp/parquetjs (in use)', value });
      return [
        measurement('parquet', `arrow + parquet-wasm: write ${n} ShareGPT rows`, n / cand.seconds, 'rows/s', baseline(n / base.seconds), details),
        measurement('parquet', 'arrow + parquet-wasm: file size', cand.bytes / 1e6, 'MB', baseline(base.bytes / 1e6), undefined, 'lower'),
        measurement('parquet', 'arrow + parquet-wasm: writer peak RSS', cand.peakRssMb, 'MB', baseline(base.peakRssMb), undefined, 'lower'),
      ];
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
