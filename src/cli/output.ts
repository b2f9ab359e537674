import { prettyFactory } from 'pino-pretty';
import { ConfigError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/logger.js';

import { LOG_FORMATS, type LogFormat } from './output-formats.js';

/** The stream logs and the live line go to (stderr); a test passes its own. */
export interface TerminalStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** --log-format, else MAGPIE_LOG_FORMAT, else readable on a terminal and JSON lines when piped. */
export function logFormatFor(flag: string | undefined, stream: TerminalStream, env: NodeJS.ProcessEnv = process.env): LogFormat {
  const chosen = flag ?? env.MAGPIE_LOG_FORMAT;
  if (chosen === undefined || chosen === '') return stream.isTTY ? 'pretty' : 'json';
  if (!(LOG_FORMATS as readonly string[]).includes(chosen)) throw new ConfigError(`${flag === undefined ? 'MAGPIE_LOG_FORMAT' : '--log-format'}: '${chosen}' is not one of ${LOG_FORMATS.join(', ')}`);
  return chosen as LogFormat;
}

const CLEAR_LINE = '\r\x1b[2K';

/**
 * Log lines and one live status line sharing a terminal: a log line clears the status line, is written, and
 * the status line is drawn again below it, so the live line stays last and is never torn.
 */
export class Terminal {
  private status = '';

  constructor(private readonly stream: TerminalStream) {}

  /** Whether a live line can be redrawn in place (a terminal, not a pipe or a file). */
  get live(): boolean {
    return Boolean(this.stream.isTTY);
  }

  log(text: string): void {
    this.stream.write(`${this.status ? CLEAR_LINE : ''}${text.endsWith('\n') ? text : `${text}\n`}${this.status}`);
  }

  /** Replaces the live line; cut to the terminal width so it never wraps (a wrapped line cannot be cleared). */
  setStatus(text: string): void {
    const width = this.stream.columns ?? 120;
    this.status = text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text;
    this.stream.write(`${CLEAR_LINE}${this.status}`);
  }

  /** Leaves the last status on screen as a finished line. */
  endStatus(): void {
    if (!this.status) return;
    this.stream.write('\n');
    this.status = '';
  }
}

let stderrTerminal: Terminal | undefined;

/** The process' stderr as a Terminal: one instance, so logs and the live line know about each other. */
export function stderrTerm(): Terminal {
  return (stderrTerminal ??= new Terminal(process.stderr));
}

/** A pino logger writing JSON lines (`json`) or pino-pretty's readable lines (`pretty`) to a terminal. */
export function createCliLogger(options: { level: string; format: LogFormat; terminal?: Terminal; colorize?: boolean }): Logger {
  const terminal = options.terminal ?? stderrTerm();
  if (options.format === 'json') return createLogger({ level: options.level }, { write: (line: string) => terminal.log(line) });
  const pretty = prettyFactory({
    colorize: options.colorize ?? terminal.live,
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname,name',
    singleLine: true,
  });
  return createLogger({ level: options.level }, { write: (line: string) => terminal.log(pretty(line)) });
}
