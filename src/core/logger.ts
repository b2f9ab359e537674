import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Paths whose values never reach a log line, wherever they appear in a logged object. */
export const REDACT_PATHS = [
  'apiKey', '*.apiKey', '*.*.apiKey',
  'password', '*.password', '*.*.password',
  'sasl.password', 'kafka.sasl.password',
  'authorization', 'headers.authorization', '*.headers.authorization',
  'token', '*.token', 'secret', '*.secret',
];

/** Secret values read by this process (API keys, passwords): scrubbed from every log line's text. */
const SECRETS = new Set<string>();

/** Call wherever a secret is read, so no log line can carry it, whatever message or error it ends up in. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 4) SECRETS.add(value);
}

/** Text with every registered secret replaced: for what leaves the process other than logs (reject and dead-letter reasons). */
export function scrubRegistered(text: string): string {
  return SECRETS.size === 0 ? text : scrubSecrets(text, SECRETS);
}

function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubSecrets(value, SECRETS);
  if (value instanceof Error) {
    const copy = Object.assign(Object.create(Object.getPrototypeOf(value) as object) as Error, value);
    copy.message = scrubSecrets(value.message, SECRETS);
    if (value.stack) copy.stack = scrubSecrets(value.stack, SECRETS);
    return copy;
  }
  if (value && typeof value === 'object' && depth < 3 && !Buffer.isBuffer(value)) {
    if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth + 1));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubValue(v, depth + 1)]));
  }
  return value;
}

export function createLogger(options: LoggerOptions = {}, destination?: pino.DestinationStream): Logger {
  const base: LoggerOptions = {
    name: 'magpie',
    level: process.env.MAGPIE_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    hooks: {
      logMethod(args, method) {
        if (SECRETS.size === 0) return method.apply(this, args);
        return method.apply(this, args.map((a) => scrubValue(a)) as Parameters<typeof method>);
      },
    },
    ...options,
  };
  return destination ? pino(base, destination) : pino(base, pino.destination(2));
}

/** Removes any occurrence of the given secret values from a free-text string (error messages, URLs). */
export function scrubSecrets(text: string, secrets: Iterable<string | undefined>): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= 4) out = out.split(secret).join('[redacted]');
  }
  return out;
}
