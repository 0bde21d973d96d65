/**
 * A minimal structured logger. Pass your own (pino, winston, console, ...) to the Broker as it
 * is; every message and field goes through {@link scrub}/{@link redact} first, and each logger
 * gets its fields the way it takes them (pino: fields first).
 * @module
 */
import { Console } from 'node:console';
import { redact, scrub } from './secrets.js';

export type LogLevel = 'silent' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
const ORDER: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

/**
 * What the Broker needs of a logger: `(message, fields)` per level. pino (`(fields, message)`),
 * winston and `console` fit as they are; see {@link LoggerStyle}.
 */
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

/**
 * How a logger takes structured fields: `message-first` (`(message, fields)`: winston, this
 * package's own), `fields-first` (`(fields, message)`: pino, bunyan) or `console` (`(...args)`,
 * where the message is not a format string). Detected when not given: pino by its own symbol,
 * `console` and `new Console()` by class; anything else is message-first.
 */
export type LoggerStyle = 'message-first' | 'fields-first' | 'console';

const PINO = Symbol.for('pino.serializers');

/** The style of a logger (see {@link LoggerStyle}). */
export function loggerStyleOf(logger: object): LoggerStyle {
  if (PINO in logger) return 'fields-first';
  if (logger === console || logger instanceof Console) return 'console';
  return 'message-first';
}

type Level = 'error' | 'warn' | 'info' | 'debug';

/** Wraps a user's logger so secrets never reach it, calling it the way it takes fields. */
export function safeLogger(inner: Logger, style: LoggerStyle = loggerStyleOf(inner)): Logger {
  const wrap = (level: Level) => {
    // A logger without this level (custom winston levels) drops its messages rather than throw.
    const fn = (inner as unknown as Record<string, unknown>)[level];
    if (typeof fn !== 'function') return () => {};
    return (message: string, fields?: Record<string, unknown>) => {
      const text = scrub(message);
      const clean = fields && Object.keys(fields).length ? safeFields(fields) : undefined;
      // No fields, no argument for them (console would print `undefined`).
      const extra = clean ? [clean] : [];
      if (style === 'fields-first') fn.apply(inner, [...extra, text]);
      // '%s': a `%` in the message is not a placeholder.
      else if (style === 'console') fn.apply(inner, ['%s', text, ...extra]);
      else fn.apply(inner, [text, ...extra]);
    };
  };
  return { error: wrap('error'), warn: wrap('warn'), info: wrap('info'), debug: wrap('debug') };
}

/** Fields with secret-named keys masked, registered secrets scrubbed from strings, errors made plain. */
function safeFields(fields: Record<string, unknown>): Record<string, unknown> {
  const walk = (value: unknown, depth: number): unknown => {
    if (typeof value === 'string') return scrub(value);
    if (value instanceof Error) {
      const code = (value as { code?: unknown }).code;
      return {
        type: value.name,
        message: scrub(value.message),
        ...(code === undefined ? {} : { code }),
        ...(value.stack ? { stack: scrub(value.stack) } : {}),
      };
    }
    if (depth > 8 || value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((v) => walk(v, depth + 1));
    if (Object.getPrototypeOf(value) !== Object.prototype) return value;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, depth + 1)]));
  };
  return walk(redact(fields), 0) as Record<string, unknown>;
}
