import { z } from 'zod';

/**
 * Filter rules over any field of a record, as written in a topology:
 *   { field: input_quality, in: [good, excellent] }
 *   { field: instruct_reward, gt: -1.5 }
 *   { field: tag_failures, empty: true, name: all_tags_computed }
 *   { field: response, maxNewlines: 4, unless: { field: task_category, in: [Coding & Debugging] } }
 * Exactly one operator per rule. `field` may be a dotted path (gen_input_configs.temperature).
 * A missing value (null or absent) fails every operator but `exists` and `empty`, unless `allowMissing`.
 * `unless` exempts records whose field holds one of the values (a rule of the released Llama-3.1 filter).
 */
export const RULE_OPS = ['eq', 'neq', 'in', 'notIn', 'gt', 'gte', 'lt', 'lte', 'between', 'exists', 'empty', 'maxNewlines'] as const;
export type RuleOp = (typeof RULE_OPS)[number];

const scalar = z.union([z.string(), z.number(), z.boolean()]);
type Scalar = z.infer<typeof scalar>;

const ruleInput = z.strictObject({
  field: z.string().min(1),
  /** Stable name on rejects; default `<field>_<op>`, e.g. input_quality_in. */
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only').optional(),
  allowMissing: z.boolean().default(false),
  eq: scalar.optional(),
  neq: scalar.optional(),
  in: z.array(scalar).min(1).optional(),
  notIn: z.array(scalar).min(1).optional(),
  gt: z.number().optional(),
  gte: z.number().optional(),
  lt: z.number().optional(),
  lte: z.number().optional(),
  between: z.tuple([z.number(), z.number()]).refine(([lo, hi]) => lo <= hi, 'between needs [low, high] with low <= high').optional(),
  exists: z.boolean().optional(),
  empty: z.boolean().optional(),
  /** At most this many line breaks in a text field. */
  maxNewlines: z.number().int().min(0).optional(),
  unless: z.strictObject({ field: z.string().min(1), in: z.array(scalar).min(1) }).optional(),
});

export type FilterRule = { name: string; field: string; path: string[]; allowMissing: boolean; unless?: { path: string[]; values: Scalar[] } } & (
  | { op: 'eq' | 'neq'; value: Scalar }
  | { op: 'in' | 'notIn'; value: Scalar[] }
  | { op: 'gt' | 'gte' | 'lt' | 'lte' | 'maxNewlines'; value: number }
  | { op: 'between'; value: [number, number] }
  | { op: 'exists' | 'empty'; value: boolean }
);

export const filterRuleSchema = ruleInput
  .superRefine((rule, ctx) => {
    const ops = RULE_OPS.filter((op) => rule[op] !== undefined);
    if (ops.length !== 1) {
      ctx.addIssue({ code: 'custom', message: `give exactly one of ${RULE_OPS.join(', ')} (got ${ops.length === 0 ? 'none' : ops.join(', ')})` });
    }
  })
  .transform((rule): FilterRule => {
    const op = RULE_OPS.find((o) => rule[o] !== undefined)!;
    return {
      name: rule.name ?? `${rule.field.replaceAll('.', '_')}_${op}`,
      field: rule.field,
      path: rule.field.split('.'),
      allowMissing: rule.allowMissing,
      ...(rule.unless ? { unless: { path: rule.unless.field.split('.'), values: rule.unless.in } } : {}),
      op,
      value: rule[op],
    } as FilterRule;
  });

export const filterRulesSchema = z
  .array(filterRuleSchema)
  .min(1)
  .superRefine((rules, ctx) => {
    const seen = new Set<string>();
    rules.forEach((rule, i) => {
      if (seen.has(rule.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `rule name '${rule.name}' is used twice: give one of the rules its own name` });
      seen.add(rule.name);
    });
  });

function valueAt(record: unknown, path: readonly string[]): unknown {
  let value = record;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function show(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : JSON.stringify(value);
}

const list = (values: readonly Scalar[]) => `[${values.join(', ')}]`;

const NUMERIC: Record<'gt' | 'gte' | 'lt' | 'lte', { symbol: string; test: (a: number, b: number) => boolean }> = {
  gt: { symbol: '>', test: (a, b) => a > b },
  gte: { symbol: '>=', test: (a, b) => a >= b },
  lt: { symbol: '<', test: (a, b) => a < b },
  lte: { symbol: '<=', test: (a, b) => a <= b },
};

/** Why `record` fails `rule`, or undefined when it passes. */
export function ruleFailure(rule: FilterRule, record: unknown): string | undefined {
  if (rule.unless?.values.includes(valueAt(record, rule.unless.path) as Scalar)) return undefined;
  const value = valueAt(record, rule.path);
  const missing = value === null || value === undefined;
  const f = rule.field;
  switch (rule.op) {
    case 'exists':
      if (missing === rule.value) return rule.value ? `${f} is missing` : `${f} is present (${show(value)})`;
      return undefined;
    case 'empty': {
      const size = missing ? 0 : typeof value === 'string' || Array.isArray(value) ? value.length : 1;
      if ((size === 0) === rule.value) return undefined;
      return rule.value ? `${f} is not empty (${Array.isArray(value) ? `${size} item${size === 1 ? '' : 's'}: ` : ''}${show(value)})` : `${f} is empty`;
    }
  }
  if (missing) return rule.allowMissing ? undefined : `${f} is missing`;
  switch (rule.op) {
    case 'eq':
      return value === rule.value ? undefined : `${f} ${show(value)} is not ${rule.value}`;
    case 'neq':
      return value !== rule.value ? undefined : `${f} is ${rule.value}`;
    case 'in':
      return rule.value.includes(value as Scalar) ? undefined : `${f} ${show(value)} not in ${list(rule.value)}`;
    case 'notIn':
      return rule.value.includes(value as Scalar) ? `${f} ${show(value)} is in ${list(rule.value)}` : undefined;
    case 'maxNewlines': {
      if (typeof value !== 'string') return `${f} ${show(value)} is not text`;
      const newlines = value.split('\n').length - 1;
      return newlines <= rule.value ? undefined : `${f} has ${newlines} line breaks, more than ${rule.value}`;
    }
  }
  if (typeof value !== 'number' || Number.isNaN(value)) return `${f} ${show(value)} is not a number`;
  if (rule.op === 'between') {
    const [lo, hi] = rule.value;
    return value >= lo && value <= hi ? undefined : `${f} ${value} not between ${lo} and ${hi}`;
  }
  const { symbol, test } = NUMERIC[rule.op];
  return test(value, rule.value) ? undefined : `${f} ${value} not ${symbol} ${rule.value}`;
}

/** The first rule `record` fails, with the reason; undefined when it passes them all. */
export function firstFailedRule(rules: readonly FilterRule[], record: unknown): { rule: string; reason: string } | undefined {
  for (const rule of rules) {
    const reason = ruleFailure(rule, record);
    if (reason !== undefined) return { rule: rule.name, reason };
  }
  return undefined;
}
