import { readFileSync, statSync } from 'node:fs';
import { ConfigError, errorMessage } from './errors.js';
import { registerSecret, type Logger } from './logger.js';

/**
 * Reads a secret (password, API key) from a file an orchestrator mounts, e.g. a Kubernetes secret volume.
 * The value is registered for scrubbing from every log line; a file others may read (looser than 0600) is
 * worth a warning, not a refusal: some mounts cannot be narrowed.
 */
export function readSecretFile(file: string, field: string, logger?: Logger): string {
  let value: string;
  let mode: number;
  try {
    value = readFileSync(file, 'utf8').trim();
    mode = statSync(file).mode & 0o777;
  } catch (err) {
    throw new ConfigError(`${field}: cannot read secrets file ${file} (${errorMessage(err)})`, { field, file });
  }
  if (!value) throw new ConfigError(`${field}: secrets file ${file} is empty`, { field, file });
  registerSecret(value);
  if ((mode & 0o077) !== 0) {
    logger?.warn({ field, file, mode: `0${mode.toString(8)}` }, `${field}: secrets file ${file} is readable by others (mode 0${mode.toString(8)}); restrict it to 0600`);
  }
  return value;
}
