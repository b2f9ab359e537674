/**
 * Errors carry a stable `code` a program can branch on, and say what to do next.
 * `retryable` tells the stage runner whether trying again may succeed.
 */
export class MagpieError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: string,
    message: string,
    options: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

/** A topology, CLI flag or environment value is invalid. Never retryable. */
export class ConfigError extends MagpieError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('CONFIG_INVALID', message, { details });
  }
}

/** Bytes that cannot be decoded, or a value that does not match its schema. */
export class SerdeError extends MagpieError {
  constructor(code: 'SERDE_CORRUPT' | 'SERDE_UNKNOWN_SCHEMA' | 'SERDE_INCOMPATIBLE' | 'SERDE_INVALID_VALUE' | 'SERDE_REGISTRY', message: string, options: { cause?: unknown; details?: Record<string, unknown>; retryable?: boolean } = {}) {
    super(code, message, options);
  }
}

/** An inference call failed. 429/5xx/timeouts/connection drops are retryable; 4xx are not. */
export class InferenceError extends MagpieError {
  constructor(code: 'INFERENCE_TIMEOUT' | 'INFERENCE_HTTP' | 'INFERENCE_CONNECTION' | 'INFERENCE_BAD_RESPONSE' | 'INFERENCE_UNAVAILABLE' | 'INFERENCE_FAILED', message: string, options: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, message, options);
  }
}

/** A record's content cannot be processed by a stage (bad input, not a transient fault). */
export class RecordError extends MagpieError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, { details });
  }
}

export function errorCode(err: unknown): string {
  return err instanceof MagpieError ? err.code : 'PROCESS_FAILED';
}

export function isRetryable(err: unknown): boolean {
  return err instanceof MagpieError && err.retryable;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
