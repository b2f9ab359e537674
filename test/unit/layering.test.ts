import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/**
 * The layers of src/, lowest first (README, Layout): a folder imports only from layers below its own.
 * Folders of one layer are siblings and do not import each other.
 */
const LAYERS: readonly (readonly string[])[] = [['core'], ['serde', 'inference', 'embedding'], ['processors'], ['kafka'], ['topology', 'export', 'report'], ['cli']];
const layerOf = (folder: string) => LAYERS.findIndex((l) => l.includes(folder));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** `from '...'` targets of a file, with whether the import is type-only. */
function imports(file: string): { target: string; typeOnly: boolean }[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)\s+(type\s+)?[^;]*?from\s+'(\.[^']+)'/gms)].map((m) => ({ target: join(file, '..', m[2]!), typeOnly: Boolean(m[1]) }));
}

describe('layering of src/', () => {
  it('has every folder in a layer', () => {
    const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(folders.filter((f) => layerOf(f) < 0)).toEqual([]);
  });

  it('imports only downwards (the validated config types of topology/schema.ts excepted, as types)', () => {
    const upward: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const from = relative(SRC, file).split('/')[0]!;
      for (const { target, typeOnly } of imports(file)) {
        const rel = relative(SRC, target);
        const to = rel.split('/')[0]!;
        if (to === from || rel.startsWith('..')) continue;
        if (typeOnly && rel === 'topology/schema.js') continue;
        if (layerOf(to) >= layerOf(from)) upward.push(`${relative(SRC, file)} imports ${rel}`);
      }
    }
    expect(upward).toEqual([]);
  });
});
