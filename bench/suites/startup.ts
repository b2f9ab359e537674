import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measurement, median, type BenchContext, type Measurement, type Suite } from '../lib/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Preloaded into each child: prints its peak resident memory (KiB) on exit. */
const PEAK_RSS = `data:text/javascript,process.on('exit',()=>process.stderr.write('\\nmagpie-bench-rss '+process.resourceUsage().maxRSS+'\\n'))`;

/** Median wall time (s) and peak RSS (MB) of `node <args>` over `runs` runs. */
function measure(args: string[], runs: number): { seconds: number; rssMb: number } {
  const times: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    const child = spawnSync(process.execPath, ['--import', PEAK_RSS, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, MAGPIE_LOG_LEVEL: 'error' } });
    times.push(Number(process.hrtime.bigint() - started) / 1e9);
    if (child.status !== 0) throw new Error(`node ${args.join(' ')} exited ${child.status}: ${child.stderr}`);
    rss.push(Number(/magpie-bench-rss (\d+)/.exec(child.stderr)?.[1] ?? NaN) / 1024);
  }
  return { seconds: median(times), rssMb: median(rss) };
}

export const startupSuite: Suite = {
  name: 'startup',
  description: 'start-up time and peak memory of the built CLI (magpie --help, topology validate) vs the same commands run from the sources through tsx, and a bare Node.js start',
  async run(ctx: BenchContext): Promise<Measurement[]> {
    ctx.progress('startup: building dist/');
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    const runs = ctx.quick ? 3 : 11;
    const bare = measure(['-e', '0'], runs);
    const out: Measurement[] = [];
    for (const command of [['--help'], ['topology', 'validate', 'topologies/local.yaml']]) {
      const built = measure(['bin/magpie.js', ...command], runs);
      const sources = measure(['--import', 'tsx', 'src/cli/main.ts', ...command], runs);
      const name = `magpie ${command.join(' ')}`;
      ctx.progress(`startup: ${name}: ${built.seconds.toFixed(2)} s, ${built.rssMb.toFixed(0)} MB (sources through tsx ${sources.seconds.toFixed(2)} s, bare node ${bare.seconds.toFixed(2)} s)`);
      const details = { runs, bareNodeSeconds: bare.seconds, bareNodeRssMb: bare.rssMb, builtRssMb: built.rssMb, tsxRssMb: sources.rssMb };
      out.push(measurement('startup', `${name} (built)`, built.seconds, 's', { name: 'same command from the sources through tsx', value: sources.seconds }, details, 'lower'));
      out.push(measurement('startup', `${name} (built) peak RSS`, built.rssMb, 'MB', { name: 'bare node -e 0', value: bare.rssMb }, undefined, 'lower'));
    }
    return out;
  },
};
