import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { neighborIndexConfigSchema, type NeighborIndexConfig } from './neighbor-index.js';

/** What a snapshot needs of an index: its settings, and saving and loading usearch's file. */
export interface SnapshotIndex {
  readonly config: NeighborIndexConfig;
  readonly size: number;
  readonly dimensions: number | undefined;
  save(path: string): Promise<void>;
  load(path: string, dimensions: number): Promise<void>;
}

/** The last changelog entry read (so known committed) before a snapshot was taken; its tail starts there. */
export interface ChangelogAnchor {
  offset: bigint;
  seq: number;
  uuid: string;
}

const fileSum = z.object({ name: z.string(), bytes: z.number().int(), sha256: z.string() }).strict();
const metaSchema = z
  .object({
    format: z.literal(1),
    changelog: z.string(),
    dimensions: z.number().int().positive(),
    index: neighborIndexConfigSchema,
    size: z.number().int().positive(),
    anchor: z.object({ offset: z.string(), seq: z.number().int(), uuid: z.string() }).strict(),
    files: z.object({ index: fileSum, uuids: fileSum }).strict(),
    savedAt: z.string(),
  })
  .strict();
type SnapshotMeta = z.infer<typeof metaSchema>;

export interface Snapshot {
  /** uuids[seq], for every entry of the index. */
  uuids: string[];
  anchor: ChangelogAnchor;
}

/** A snapshot file still being written after this long was left by a crash. */
const UNFINISHED_AFTER_MS = 15 * 60_000;

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function summed(dir: string, name: string) {
  const file = path.join(dir, name);
  return { name, bytes: (await stat(file)).size, sha256: await sha256(file) };
}

/**
 * Snapshots of a near-duplicate index in a local directory, one directory per changelog topic: usearch's
 * own file, the uuids by seq, and a manifest (written last, so a snapshot cut short by a crash is never seen)
 * with checksums, the index settings and the changelog entry it was taken at. A snapshot only speeds a
 * restore up: one that is missing, corrupt, built with other settings or not matched by the changelog is
 * skipped with a warning and the index is rebuilt from the changelog.
 */
export class IndexSnapshots {
  readonly dir: string;

  constructor(
    root: string,
    private readonly changelog: string,
    private readonly keep: number,
    private readonly logger: Logger,
  ) {
    this.dir = path.join(root, changelog);
  }

  async save(index: SnapshotIndex, uuids: readonly string[], anchor: ChangelogAnchor): Promise<void> {
    const started = Date.now();
    await mkdir(this.dir, { recursive: true });
    const base = `${String(index.size).padStart(12, '0')}-${Date.now()}`;
    const tmp = (name: string) => path.join(this.dir, `${name}.tmp`);
    await index.save(tmp(`${base}.usearch`));
    await writeFile(tmp(`${base}.uuids`), uuids.join('\n'));
    for (const ext of ['usearch', 'uuids']) await rename(tmp(`${base}.${ext}`), path.join(this.dir, `${base}.${ext}`));
    const meta: SnapshotMeta = {
      format: 1,
      changelog: this.changelog,
      dimensions: index.dimensions!,
      index: index.config,
      size: index.size,
      anchor: { offset: anchor.offset.toString(), seq: anchor.seq, uuid: anchor.uuid },
      files: { index: await summed(this.dir, `${base}.usearch`), uuids: await summed(this.dir, `${base}.uuids`) },
      savedAt: new Date().toISOString(),
    };
    await writeFile(tmp(`${base}.json`), JSON.stringify(meta, null, 1));
    await rename(tmp(`${base}.json`), path.join(this.dir, `${base}.json`));
    this.logger.info({ dir: this.dir, size: index.size, anchor: meta.anchor, ms: Date.now() - started }, 'index snapshot saved');
    await this.prune();
  }

  /** Manifests, newest first. */
  private async manifests(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.json')).sort().reverse();
  }

  /** Keeps the newest `keep` snapshots, and removes files of snapshots a crash left unfinished. */
  private async prune(): Promise<void> {
    const keepBases = new Set((await this.manifests()).slice(0, this.keep).map((n) => n.slice(0, -'.json'.length)));
    for (const name of await readdir(this.dir)) {
      const file = path.join(this.dir, name);
      // Another instance on this machine may be writing one right now.
      if (name.endsWith('.tmp') && Date.now() - (await stat(file).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs < UNFINISHED_AFTER_MS) continue;
      if (!keepBases.has(name.replace(/\.(json|usearch|uuids)(\.tmp)?$/, ''))) await rm(file, { force: true });
    }
  }

  /**
   * Loads each intact snapshot built with the index's settings into it, newest first, until the caller stops
   * (it found one the changelog confirms); warns about each one skipped.
   */
  async *loadNewestFirst(index: SnapshotIndex): AsyncGenerator<Snapshot> {
    for (const name of await this.manifests()) {
      let snapshot: Snapshot;
      try {
        snapshot = await this.load(name, index);
      } catch (err) {
        this.logger.warn({ snapshot: path.join(this.dir, name), reason: errorMessage(err) }, 'index snapshot skipped');
        continue;
      }
      yield snapshot;
    }
  }

  private async load(manifest: string, index: SnapshotIndex): Promise<Snapshot> {
    const started = Date.now();
    const config = index.config;
    const meta = metaSchema.parse(JSON.parse(await readFile(path.join(this.dir, manifest), 'utf8')));
    if (meta.changelog !== this.changelog) throw new Error(`taken from changelog ${meta.changelog}, not ${this.changelog}`);
    if (JSON.stringify(meta.index) !== JSON.stringify(config)) throw new Error(`built with index settings ${JSON.stringify(meta.index)}, the stage has ${JSON.stringify(config)}`);
    for (const file of [meta.files.index, meta.files.uuids]) {
      const now = await summed(this.dir, file.name);
      if (now.bytes !== file.bytes || now.sha256 !== file.sha256) throw new Error(`${file.name} does not match its checksum (corrupt or partly written)`);
    }
    const uuids = (await readFile(path.join(this.dir, meta.files.uuids.name), 'utf8')).split('\n');
    await index.load(path.join(this.dir, meta.files.index.name), meta.dimensions);
    if (uuids.length !== meta.size || index.size !== meta.size) throw new Error(`holds ${index.size} vectors and ${uuids.length} uuids, its manifest says ${meta.size}`);
    this.logger.info({ snapshot: path.join(this.dir, manifest), size: meta.size, ms: Date.now() - started }, 'index snapshot loaded');
    return { uuids, anchor: { offset: BigInt(meta.anchor.offset), seq: meta.anchor.seq, uuid: meta.anchor.uuid } };
  }
}
