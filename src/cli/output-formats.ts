/** Log formats of the CLI; apart from src/cli/output.ts so `magpie --help` need not load pino-pretty. */
export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
