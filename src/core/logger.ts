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

export function createLogger(options: LoggerOptions = {}, destination?: pino.DestinationStream): Logger {
  const base: LoggerOptions = {
    name: 'magpie',
    level: process.env.MAGPIE_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
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
