/**
 * A minimal structured logger. Pass your own (pino, console, ...) to the Broker; every
 * message and field goes through {@link scrub}/{@link redact} first.
 * @module
 */
import { redact, scrub } from './secrets.js';

export type LogLevel = 'silent' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
const ORDER: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

/** What the Broker needs of a logger; `console` and pino both fit. */
export interface Logger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
}

/** A logger that writes one line per message to stderr at or above `level`. */
export function createLogger(level: LogLevel = 'warn', write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Logger {
  const at = (lvl: Exclude<LogLevel, 'silent'>) => (message: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] > ORDER[level]) return;
    const extra = fields && Object.keys(fields).length ? ` ${JSON.stringify(redact(fields))}` : '';
    write(scrub(`[hostbroker] ${lvl}: ${message}${extra}`));
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

/** Wraps a user's logger so secrets never reach it. */
export function safeLogger(inner: Logger): Logger {
  const wrap = (fn: Logger['info']) => (message: string, fields?: Record<string, unknown>) =>
    fn.call(inner, scrub(message), fields ? redact(fields) : undefined);
  return { error: wrap(inner.error), warn: wrap(inner.warn), info: wrap(inner.info), debug: wrap(inner.debug) };
}
