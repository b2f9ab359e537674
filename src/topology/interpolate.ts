import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../core/errors.js';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function lookup(name: string, fallback: string | undefined, env: NodeJS.ProcessEnv, path: string): string {
  const value = env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return substitute(fallback, env, path);
  throw new ConfigError(`${path || '(root)'}: environment variable ${name} is not set (use \${${name}:-default} for a default)`, { field: path, variable: name });
}

/** Index of the `}` closing the `${` at `start`, counting nested placeholders in defaults. */
function closing(text: string, start: number, path: string): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    if (text.startsWith('${', i)) {
      depth++;
      i++;
    } else if (text[i] === '}' && --depth === 0) {
      return i;
    }
  }
  throw new ConfigError(`${path || '(root)'}: unclosed \${ in ${JSON.stringify(text)}`, { field: path });
}

/** Expands `${VAR}` and `${VAR:-default}`; a default may itself hold placeholders (`${A:-${HOME}/x}`). */
function substitute(text: string, env: NodeJS.ProcessEnv, path: string): string {
  let out = '';
  let i = 0;
  for (let start = text.indexOf('${'); start >= 0; start = text.indexOf('${', i)) {
    const end = closing(text, start, path);
    const body = text.slice(start + 2, end);
    const sep = body.indexOf(':-');
    const name = sep >= 0 ? body.slice(0, sep) : body;
    if (!NAME.test(name)) throw new ConfigError(`${path || '(root)'}: '${name}' is not an environment variable name`, { field: path });
    out += text.slice(i, start) + lookup(name, sep >= 0 ? body.slice(sep + 2) : undefined, env, path);
    i = end + 1;
  }
  return out + text.slice(i);
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
    if (!node.includes('${')) return node;
    const whole = node.startsWith('${') && closing(node, 0, path) === node.length - 1;
    const value = substitute(node, env, path);
    return whole ? typed(value) : value;
  }
  if (Array.isArray(node)) return node.map((item, i) => interpolateEnv(item, env, `${path}[${i}]`));
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateEnv(v, env, path ? `${path}.${k}` : k)]));
  }
  return node;
}
