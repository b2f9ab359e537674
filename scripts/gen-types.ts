/**
 * Writes src/serde/records.generated.ts: a TypeScript type for every named record and enum in schemas/,
 * so the types follow the schemas instead of sitting beside them.
 *
 *   node --import tsx scripts/gen-types.ts           regenerate
 *   node --import tsx scripts/gen-types.ts --check   exit 1 if the checked-in file is stale (CI)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Type, types } from 'avsc';
import { loadSchemaSet, type SchemaSet } from '../src/serde/avro.js';

export const GENERATED_FILE = fileURLToPath(new URL('../src/serde/records.generated.ts', import.meta.url));

const HEADER = `// generated from schemas/ by scripts/gen-types.ts; do not edit.
// Regenerate with \`node --import tsx scripts/gen-types.ts\` after changing a schema.
//
// Fields with a default are required here too: decoding fills them in. When encoding they may be left out.
`;

/** The declarations for every named type of `set`, in schema order, and the RecordTypes map. */
export function renderRecordTypes(set: SchemaSet = loadSchemaSet()): string {
  const declarations: string[] = [];
  const shortNames = new Map<string, string>();

  const shortName = (type: Type): string => {
    const full = type.name!;
    const short = full.slice(full.lastIndexOf('.') + 1);
    const owner = shortNames.get(short);
    if (owner !== undefined && owner !== full) throw new Error(`${full} and ${owner} would both be the TS type ${short}: rename one`);
    return short;
  };

  // Pre-order walk: a named type is declared where the schema first defines it.
  const tsType = (type: Type): string => {
    const name = type.typeName;
    if (type.name !== undefined && (name === 'record' || name === 'error' || name === 'enum' || name === 'fixed')) {
      const short = shortName(type);
      if (!shortNames.has(short)) {
        shortNames.set(short, type.name);
        declare(type, short);
      }
      return short;
    }
    if (name.startsWith('logical:')) return tsType((type as types.LogicalType).underlyingType);
    switch (name) {
      case 'null':
        return 'null';
      case 'boolean':
        return 'boolean';
      case 'int':
      case 'long':
      case 'float':
      case 'double':
        return 'number';
      case 'string':
        return 'string';
      case 'bytes':
        return 'Buffer';
      case 'array': {
        const items = tsType((type as types.ArrayType).itemsType);
        return items.includes('|') ? `(${items})[]` : `${items}[]`;
      }
      case 'map':
        return `Record<string, ${tsType((type as types.MapType).valuesType as Type)}>`;
      case 'union:unwrapped': {
        const branches = (type as types.UnwrappedUnionType).types.map(tsType);
        // Null last reads as "T | null", the usual TS spelling of an optional value.
        return [...branches.filter((b) => b !== 'null'), ...branches.filter((b) => b === 'null')].join(' | ');
      }
      default:
        throw new Error(`no TS mapping for Avro type ${name}`);
    }
  };

  const declare = (type: Type, short: string): void => {
    const index = declarations.push('') - 1; // reserve the slot so a type precedes the types it defines
    const doc = docComment(type.doc, '');
    if (type.typeName === 'enum') {
      declarations[index] = `${doc}export type ${short} = ${(type as types.EnumType).symbols.map((s) => `'${s}'`).join(' | ')};\n`;
    } else if (type.typeName === 'fixed') {
      declarations[index] = `${doc}export type ${short} = Buffer;\n`;
    } else {
      const fields = (type as types.RecordType).fields.map((field) => {
        const notes = [(field as { doc?: string }).doc, logicalNote(field.type), defaultNote(field)].filter(Boolean).join(' ');
        return `${docComment(notes, '  ')}  ${field.name}: ${tsType(field.type)};\n`;
      });
      declarations[index] = `${doc}export interface ${short} {\n${fields.join('')}}\n`;
    }
  };

  const entries = set.types.map((type) => `  '${type.name}': ${tsType(type)};\n`);
  const recordTypes = `/** The TS type of each top-level record, by schema name. */\nexport interface RecordTypes {\n${entries.join('')}}\n`;
  return [HEADER, ...declarations, recordTypes].join('\n');
}

function docComment(text: string | undefined, indent: string): string {
  if (!text) return '';
  return `${indent}/** ${text.replaceAll('*/', '*\\/').replaceAll('\n', ' ')} */\n`;
}

function logicalNote(type: Type): string | undefined {
  return type.typeName === 'logical:timestamp-millis' ? 'Milliseconds since the Unix epoch.' : undefined;
}

function defaultNote(field: types.Field): string | undefined {
  const value: unknown = field.defaultValue();
  return value === undefined ? undefined : `Default: ${JSON.stringify(value)}.`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const content = renderRecordTypes();
  if (process.argv.includes('--check')) {
    if (readFileSync(GENERATED_FILE, 'utf8') !== content) {
      console.error(`${GENERATED_FILE} is stale: run node --import tsx scripts/gen-types.ts`);
      process.exit(1);
    }
  } else {
    writeFileSync(GENERATED_FILE, content);
    console.error(`wrote ${GENERATED_FILE}`);
  }
}
