import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import type { Schema, Type } from 'avsc';
import { ConfigError, SerdeError } from '../core/errors.js';
import { SCHEMA_NAMES, type SchemaName } from './schemas.js';

/** schemas/ at the package root (two levels up from src/serde/ and from a compiled dist/serde/). */
export const DEFAULT_SCHEMA_DIR = fileURLToPath(new URL('../../schemas/', import.meta.url));

/**
 * Keeps timestamp-millis a plain number (ms since epoch) in JS, but as a logical type so the
 * schemas we publish (schema store, Confluent registry) still carry `logicalType` for other readers.
 */
class TimestampMillis extends avro.types.LogicalType {
  protected override _fromValue(val: number): number {
    return val;
  }
  protected override _toValue(val: unknown): unknown {
    return val;
  }
  protected override _resolve(writer: Type): ((val: number) => number) | undefined {
    return avro.Type.isType(writer, 'long', 'int', 'logical:timestamp-millis') ? (val) => val : undefined;
  }
}

const LOGICAL_TYPES = { 'timestamp-millis': TimestampMillis };

/**
 * Fingerprint of a schema: hex SHA-256 of its Parsing Canonical Form (what `type.fingerprint('sha256')` hashes).
 * SHA-256 rather than the spec's 64-bit Rabin: any Avro library can recompute it, and 64 header bytes
 * are nothing next to a record; the canonical form ignores docs and defaults, so only changes to the
 * binary layout give a new fingerprint.
 */
export function fingerprintOf(type: Type): string {
  return type.fingerprint('sha256').toString('hex');
}

/** A schema as JSON with every named type it uses inlined, docs, defaults and logical types kept. */
export function schemaJsonOf(type: Type): string {
  return JSON.stringify(type.schema({ exportAttrs: true }));
}

/** Parses a self-contained writer schema (from the schema store or a registry) into a fresh registry. */
export function parseWriterSchema(json: string): Type {
  return avro.Type.forSchema(JSON.parse(json) as Schema, { logicalTypes: LOGICAL_TYPES, registry: {} });
}

/** The record schemas the process writes with and reads as. */
export interface SchemaSet {
  /** Top-level types, one per schema file, in dependency order. */
  readonly types: readonly Type[];
  getType(name: SchemaName): Type;
  fingerprint(name: SchemaName): string;
}

export interface SchemaSetOptions {
  /** Accept a set without every record of SCHEMA_NAMES (a released version predating a record); getType throws for the missing ones. */
  partial?: boolean;
}

/**
 * Builds avsc types from schema JSON in any order; a schema may use named types another one defines
 * (conversation.avsc uses magpie.GenInputConfigs from instruction.avsc). `labels` name the sources in errors.
 */
export function createSchemaSet(schemas: readonly unknown[], labels: readonly string[] = schemas.map((_, i) => `schema #${i}`), options: SchemaSetOptions = {}): SchemaSet {
  const registry: Record<string, Type> = {};
  const byName = new Map<string, { type: Type; fingerprint: string }>();
  const types = dependencyOrder(schemas, labels).map((i) => {
    let type: Type;
    try {
      // 'never': a union that avsc would have to wrap fails here, so decoded values match the generated TS types.
      type = avro.Type.forSchema(schemas[i] as Schema, { registry, logicalTypes: LOGICAL_TYPES, wrapUnions: 'never' });
    } catch (err) {
      throw new ConfigError(`${labels[i]}: invalid Avro schema: ${(err as Error).message}`, { source: labels[i] });
    }
    if (type.name) byName.set(type.name, { type, fingerprint: fingerprintOf(type) });
    return type;
  });
  const missing = SCHEMA_NAMES.filter((name) => !byName.has(name));
  if (missing.length > 0 && !options.partial) {
    throw new ConfigError(`no schema defines ${missing.join(', ')}: every record in SCHEMA_NAMES needs a top-level .avsc file`, { missing });
  }
  const entry = (name: SchemaName) => {
    const found = byName.get(name);
    if (!found) throw new SerdeError('SERDE_UNKNOWN_SCHEMA', `unknown schema ${name}: expected one of ${SCHEMA_NAMES.join(', ')}`, { details: { schema: name } });
    return found;
  };
  return { types, getType: (name) => entry(name).type, fingerprint: (name) => entry(name).fingerprint };
}

/** Reads every *.avsc file of `dir`; errors name the file. */
export function loadSchemaSet(dir: string = DEFAULT_SCHEMA_DIR, options: SchemaSetOptions = {}): SchemaSet {
  const files = readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort();
  const schemas = files.map((file) => {
    try {
      return JSON.parse(readFileSync(join(dir, file), 'utf8')) as unknown;
    } catch (err) {
      throw new ConfigError(`${join(dir, file)}: ${(err as Error).message}`, { file });
    }
  });
  return createSchemaSet(schemas, files.map((f) => join(dir, f)), options);
}

let defaultSet: SchemaSet | undefined;

/** The schemas in schemas/, loaded on first use. */
export function defaultSchemaSet(): SchemaSet {
  defaultSet ??= loadSchemaSet();
  return defaultSet;
}

export function getType(name: SchemaName): Type {
  return defaultSchemaSet().getType(name);
}

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
const NAMED = new Set(['record', 'error', 'enum', 'fixed']);

function qualify(name: string, namespace: string | undefined): string {
  return name.includes('.') || !namespace ? name : `${namespace}.${name}`;
}

/** Full names a schema defines and the ones it references, following Avro's namespace rules. */
function namesOf(schema: unknown, namespace: string | undefined, defined: Set<string>, used: Set<string>): void {
  if (typeof schema === 'string') {
    if (!PRIMITIVES.has(schema)) used.add(qualify(schema, namespace));
  } else if (Array.isArray(schema)) {
    for (const branch of schema) namesOf(branch, namespace, defined, used);
  } else if (schema !== null && typeof schema === 'object') {
    const s = schema as { type?: unknown; name?: unknown; namespace?: unknown; fields?: { type?: unknown }[]; items?: unknown; values?: unknown };
    if (typeof s.type === 'string' && NAMED.has(s.type) && typeof s.name === 'string') {
      const full = qualify(s.name, typeof s.namespace === 'string' ? s.namespace : namespace);
      defined.add(full);
      namespace = full.includes('.') ? full.slice(0, full.lastIndexOf('.')) : undefined;
    }
    if (s.type === 'array') namesOf(s.items, namespace, defined, used);
    else if (s.type === 'map') namesOf(s.values, namespace, defined, used);
    else if (Array.isArray(s.fields)) for (const field of s.fields) namesOf(field.type, namespace, defined, used);
    else if (typeof s.type !== 'string' || !NAMED.has(s.type)) namesOf(s.type, namespace, defined, used);
  }
}

/** Indexes of `schemas` ordered so that each comes after the schemas defining the names it uses. */
function dependencyOrder(schemas: readonly unknown[], labels: readonly string[]): number[] {
  const info = schemas.map((schema) => {
    const defined = new Set<string>();
    const used = new Set<string>();
    namesOf(schema, undefined, defined, used);
    return { defined, used };
  });
  const definedBy = new Map<string, number>();
  info.forEach(({ defined }, i) => defined.forEach((name) => definedBy.set(name, i)));
  const order: number[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (i: number) => {
    if (state.get(i) === 'done') return;
    if (state.get(i) === 'visiting') throw new ConfigError(`${labels[i]}: schemas reference each other in a cycle`, { source: labels[i] });
    state.set(i, 'visiting');
    for (const name of info[i]!.used) {
      if (info[i]!.defined.has(name)) continue;
      const dep = definedBy.get(name);
      if (dep === undefined) throw new ConfigError(`${labels[i]}: uses type ${name}, which no schema defines`, { source: labels[i], type: name });
      visit(dep);
    }
    state.set(i, 'done');
    order.push(i);
  };
  schemas.forEach((_, i) => visit(i));
  return order;
}
