import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../core/errors.js';

const PATTERN = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/;

function lookup(name: string, fallback: string | undefined, env: NodeJS.ProcessEnv, path: string): string {
  const value = env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(`${path || '(root)'}: environment variable ${name} is not set (use \${${name}:-default} for a default)`, { field: path, variable: name });
}

/** A whole-value placeholder takes the YAML type of what it becomes: `gt: ${MIN_REWARD:-0.5}` is a number. */
function typed(text: string): unknown {
  try {
    const value: unknown = parseYaml(text);
    return value === null || typeof value === 'object' ? text : value;
  } catch {
    return text;
  }
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string of a parsed YAML document.
 * A variable that is unset and has no default is an error naming the field, so a typo never becomes "".
 */
export function interpolateEnv(node: unknown, env: NodeJS.ProcessEnv, path = ''): unknown {
  if (typeof node === 'string') {
    const whole = WHOLE.exec(node);
    if (whole) return typed(lookup(whole[1]!, whole[2], env, path));
    return node.replace(PATTERN, (_match, name: string, fallback: string | undefined) => lookup(name, fallback, env, path));
  }
  if (Array.isArray(node)) return node.map((item, i) => interpolateEnv(item, env, `${path}[${i}]`));
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateEnv(v, env, path ? `${path}.${k}` : k)]));
  }
  return node;
}
