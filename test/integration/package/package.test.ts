import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix } from '../../support/broker.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../../..');
let dir: string;
let app: string;
let magpie: string;

/** Runs the installed `magpie` bin as a user would, from the install directory; never throws. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(magpie, args, { cwd: app, env: { ...process.env, MAGPIE_LOG_LEVEL: 'warn', ...env }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'magpie-package-it-'));
  app = path.join(dir, 'app');
  const npmEnv = { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' };
  // `npm pack` runs prepack, which compiles src/ to dist/: the tarball is what `npm publish` would upload.
  await run('npm', ['pack', '--pack-destination', dir], { cwd: ROOT, env: npmEnv, timeout: 240_000 });
  const tarball = (await readdir(dir)).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack left no tarball in ${dir}`);
  await run('mkdir', ['-p', app]);
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'empty-app', private: true }));
  // From npm's cache where it can. Optional platform binaries (llama.cpp GPU builds, sharp) are left out:
  // none of the commands tested here loads them, and they are most of the download.
  await run('npm', ['install', '--prefer-offline', '--omit=optional', path.join(dir, tarball)], {
    cwd: app,
    env: { ...npmEnv, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip', ONNXRUNTIME_NODE_INSTALL: 'skip' },
    timeout: 280_000,
  });
  magpie = path.join(app, 'node_modules', '.bin', 'magpie');
}, 600_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the npm package, installed into an empty directory', () => {
  it('holds the compiled CLI and runs it without TypeScript tooling', async () => {
    const installed = path.join(app, 'node_modules', 'magpie-stream');
    expect((await stat(path.join(installed, 'dist', 'cli', 'main.js'))).isFile()).toBe(true);
    expect(await readdir(path.join(installed))).not.toContain('src');
    // tsx is a development tool only: the installed bin must not need it.
    await expect(stat(path.join(app, 'node_modules', 'tsx'))).rejects.toThrow();
    await expect(stat(path.join(app, 'node_modules', 'typescript'))).rejects.toThrow();
  });

  it('magpie --help lists the commands', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    for (const command of ['run', 'topics', 'topology', 'produce', 'tail', 'schemas', 'export', 'replay', 'report']) expect(r.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('magpie topology validate accepts the shipped topologies and names the bad field of a broken one', async () => {
    const shipped = path.join(app, 'node_modules', 'magpie-stream', 'topologies');
    const files = (await readdir(shipped)).filter((f) => f.endsWith('.yaml')).map((f) => path.join(shipped, f));
    expect(files.length).toBeGreaterThan(0);
    const ok = await cli(['topology', 'validate', ...files]);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim().split('\n')).toEqual(files.map((f) => `${f}: ok`));

    const broken = path.join(dir, 'broken.yaml');
    await writeFile(broken, `${await readFile(path.join(ROOT, 'topologies', 'local.yaml'), 'utf8')}\nnot_a_field: 1\n`);
    const bad = await cli(['topology', 'validate', broken]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('not_a_field');
    expect(bad.stderr).not.toMatch(/^\s+at /m);
  });

  it('magpie schemas check passes', async () => {
    const r = await cli(['schemas', 'check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^schemas ok: /);
  });

  it('magpie tail without a broker says at once what to do, in one line, without a stack trace', async () => {
    // A port nothing listens on.
    const r = await cli(['tail', 'magpie.sink'], { KAFKA_BROKERS: '127.0.0.1:9' });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('cannot reach Kafka');
    expect(r.stderr).toContain('scripts/kafka.sh start');
    const verbose = await cli(['tail', 'magpie.sink', '--verbose'], { KAFKA_BROKERS: '127.0.0.1:9' });
    expect(verbose.stderr).toMatch(/^\s+at /m);
  });

  it('magpie tail of a missing topic names it, in one line', async () => {
    const topic = `${uniquePrefix('package')}.missing`;
    const r = await cli(['tail', topic], { KAFKA_BROKERS: inject('kafkaBootstrap') });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`topic ${topic} does not exist`);
  });
});
