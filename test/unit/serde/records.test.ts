import { readFileSync } from 'node:fs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { GENERATED_FILE, renderRecordTypes } from '../../../scripts/gen-types.js';
import type { RecordTypes } from '../../../src/serde/records.generated.js';
import type { SchemaName } from '../../../src/serde/schemas.js';

describe('records.generated.ts', () => {
  it('matches schemas/: run `node --import tsx scripts/gen-types.ts` after changing a schema', () => {
    expect(readFileSync(GENERATED_FILE, 'utf8')).toBe(renderRecordTypes());
  });

  it('has a RecordTypes entry for exactly the schema names', () => {
    expectTypeOf<keyof RecordTypes>().toEqualTypeOf<SchemaName>();
  });
});
