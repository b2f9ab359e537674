import { describe, expect, it } from 'vitest';
import { STAGE_DEFINITIONS } from '../../../src/processors/registry.js';
import { commonStageFields } from '../../../src/topology/schema.js';

describe('stage registry', () => {
  it('has unique stage types', () => {
    const types = STAGE_DEFINITIONS.map((d) => d.type);
    expect(new Set(types).size).toBe(types.length);
  });

  it.each(STAGE_DEFINITIONS.map((d) => [d.type, d] as const))('%s does not redefine a common stage field', (_type, def) => {
    const clashes = Object.keys(def.config.shape).filter((k) => k in commonStageFields);
    expect(clashes).toEqual([]);
  });
});
