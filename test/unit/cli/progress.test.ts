import { describe, expect, it } from 'vitest';
import { describeStage } from '../../../src/cli/progress.js';

describe('progress lines', () => {
  it('read as flow, problems and rate', () => {
    expect(describeStage('responses', { in: 12, out: 11, rejected: 1, deadLettered: 0 }, 0.44)).toBe('responses 12→11 (1 rejected) 0.4/s');
    expect(describeStage('instructions', { in: 0, out: 6, rejected: 4, deadLettered: 2 }, 1)).toBe('instructions 6 out (4 rejected, 2 dead-lettered) 1.0/s');
  });
});
