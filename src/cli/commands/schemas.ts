import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { SCHEMA_NAMES } from '../../serde/schemas.js';
import { ConfigError } from '../../core/errors.js';

/** Every released version must stay readable by the current schemas and able to read records they write. */
export async function checkSchemaCompatibility(releasedDir?: string): Promise<string[]> {
  const { DEFAULT_SCHEMA_DIR, defaultSchemaSet, loadSchemaSet } = await import('../../serde/avro.js');
  releasedDir ??= join(DEFAULT_SCHEMA_DIR, 'released');
  const current = defaultSchemaSet();
  const problems: string[] = [];
  const versions = readdirSync(releasedDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  for (const version of versions) {
    const released = loadSchemaSet(join(releasedDir, version), { partial: true });
    for (const name of SCHEMA_NAMES) {
      let old;
      try {
        old = released.getType(name);
      } catch {
        continue; // the record did not exist in that release
      }
      const now = current.getType(name);
      try {
        now.createResolver(old);
      } catch (err) {
        problems.push(`${name}: current schema cannot read records written with released ${version}: ${(err as Error).message}`);
      }
      try {
        old.createResolver(now);
      } catch (err) {
        problems.push(`${name}: consumers on released ${version} cannot read records written with the current schema: ${(err as Error).message}`);
      }
    }
  }
  return problems;
}

export function registerSchemas(program: Command): void {
  const cmd = program.command('schemas').description('inspect and check the Avro record schemas');
  cmd
    .command('check')
    .description('parse schemas/ and check compatibility with every released version in schemas/released/')
    .action(async () => {
      const problems = await checkSchemaCompatibility();
      if (problems.length) throw new ConfigError(`schema compatibility check failed:\n${problems.join('\n')}\nAdd fields with defaults only; rename with aliases.`);
      process.stdout.write(`schemas ok: ${SCHEMA_NAMES.join(', ')} compatible with all released versions\n`);
    });
  cmd
    .command('show')
    .description('print a schema with its fingerprint')
    .argument('<name>', SCHEMA_NAMES.join(' | '))
    .action(async (name: string) => {
      const { defaultSchemaSet } = await import('../../serde/avro.js');
      const set = defaultSchemaSet();
      if (!SCHEMA_NAMES.includes(name as (typeof SCHEMA_NAMES)[number])) throw new ConfigError(`unknown schema '${name}' (one of ${SCHEMA_NAMES.join(', ')})`);
      const n = name as (typeof SCHEMA_NAMES)[number];
      process.stdout.write(`${JSON.stringify({ fingerprint: set.fingerprint(n), schema: set.getType(n).schema({ exportAttrs: true }) }, null, 2)}\n`);
    });
}
