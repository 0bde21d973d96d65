/**
 * The logger adapter against the real pino and winston and Node's console: fields survive in
 * each one's own shape, secrets never reach them.
 */
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import winston from 'winston';
import { describe, expect, it } from 'vitest';
import { type Logger, loggerStyleOf, safeLogger } from '../lib/logger.js';
import { registerSecret } from '../lib/secrets.js';

/** A stream keeping what was written, as lines. */
function sink(): { stream: Writable; lines: () => string[] } {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, lines: () => text.split('\n').filter(Boolean) };
}

const SECRET = 'Sup3r-Secret-Value';
registerSecret(SECRET);

/** What every logger gets: a message, fields (nested, one secret-named, one holding a registered secret, an error). */
function logAll(logger: Logger): void {
  logger.info('checked out 2 hosts (100% of the request)', {
    provider: 'container',
    count: 2,
    hosts: [{ name: 'web-1', password: 'hunter2' }],
    note: `login with ${SECRET} worked`,
    token: 'abc123',
  });
  logger.warn('release failed', { error: Object.assign(new Error(`refused: ${SECRET}`), { code: 'EACCES' }) });
  logger.debug('no fields');
}

describe('pino', () => {
  it('is detected and called fields-first: every field lands in the JSON line, secrets masked', async () => {
    const out = sink();
    const logger = pino({ level: 'debug', base: undefined }, out.stream);
    expect(loggerStyleOf(logger)).toBe('fields-first');
    // Passed as it is: pino's own type fits the Logger interface.
    logAll(safeLogger(logger));
    logger.flush();
    const [info, warn, debug] = out.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(info).toMatchObject({
      level: 30,
      msg: 'checked out 2 hosts (100% of the request)',
      provider: 'container',
      count: 2,
      hosts: [{ name: 'web-1', password: '[redacted]' }],
      note: 'login with [redacted] worked',
      token: '[redacted]',
    });
    expect(warn).toMatchObject({ level: 40, msg: 'release failed', error: { type: 'Error', message: 'refused: [redacted]', code: 'EACCES' } });
    expect(debug).toMatchObject({ level: 20, msg: 'no fields' });
    expect(out.lines().join('\n')).not.toMatch(/hunter2|abc123|Sup3r-Secret/);
  });

  it('a pino child logger keeps its bindings and is detected too', () => {
    const out = sink();
    const child = pino({ base: undefined }, out.stream).child({ suite: 'e2e' });
    safeLogger(child).info('hello', { host: 'web-1' });
    expect(JSON.parse(out.lines()[0]!)).toMatchObject({ suite: 'e2e', host: 'web-1', msg: 'hello' });
  });

  it('fields-first can be forced for a logger detection does not know', () => {
    const calls: unknown[][] = [];
    const bunyanLike = { info: (...a: unknown[]) => calls.push(a), warn() {}, error() {}, debug() {} };
    safeLogger(bunyanLike, 'fields-first').info('m', { a: 1 });
    expect(calls).toEqual([[{ a: 1 }, 'm']]);
  });
});

describe('winston', () => {
  it('takes (message, meta): fields are merged into the JSON entry, secrets masked', () => {
    const out = sink();
    const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: out.stream })] });
    expect(loggerStyleOf(logger)).toBe('message-first');
    logAll(safeLogger(logger));
    const [info, warn, debug] = out.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(info).toMatchObject({
      level: 'info',
      message: 'checked out 2 hosts (100% of the request)',
      provider: 'container',
      count: 2,
      hosts: [{ name: 'web-1', password: '[redacted]' }],
      note: 'login with [redacted] worked',
      token: '[redacted]',
    });
    expect(warn).toMatchObject({ level: 'warn', message: 'release failed', error: { message: 'refused: [redacted]', code: 'EACCES' } });
    expect(debug).toMatchObject({ level: 'debug', message: 'no fields' });
    expect(out.lines().join('\n')).not.toMatch(/hunter2|abc123|Sup3r-Secret/);
  });

  it('a winston logger with custom levels lacking debug drops debug lines instead of throwing', () => {
    const out = sink();
    const logger = winston.createLogger({
      levels: { error: 0, warn: 1, info: 2 },
      level: 'info',
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: out.stream })],
    });
    const safe = safeLogger(logger as unknown as Logger);
    safe.debug('dropped');
    safe.info('kept', { n: 1 });
    expect(out.lines().map((l) => JSON.parse(l))).toEqual([{ level: 'info', message: 'kept', n: 1 }]);
  });
});

describe('console', () => {
  it('is detected; the message is printed as is (a % is no placeholder) and fields follow it', () => {
    const out = sink();
    const con = new Console({ stdout: out.stream, stderr: out.stream, inspectOptions: { breakLength: Infinity, depth: 5 } });
    expect(loggerStyleOf(con)).toBe('console');
    expect(loggerStyleOf(console)).toBe('console');
    logAll(safeLogger(con));
    const [info, warn, debug] = out.lines();
    expect(info).toMatch(
      /^checked out 2 hosts \(100% of the request\) \{ provider: 'container', count: 2, hosts: \[ \{ name: 'web-1', password: '\[redacted\]' \} \]/,
    );
    expect(info).toContain("token: '[redacted]'");
    expect(warn).toMatch(/^release failed \{ error: \{ type: 'Error', message: 'refused: \[redacted\]', code: 'EACCES'/);
    expect(debug).toBe('no fields');
    expect(out.lines().join('\n')).not.toMatch(/hunter2|abc123|Sup3r-Secret/);
  });
});

describe('message-first loggers', () => {
  it('get (message, fields), and (message) alone when there are none', () => {
    const calls: unknown[][] = [];
    const mine: Logger = { info: (...a) => calls.push(a), warn() {}, error() {}, debug: (...a) => calls.push(a) };
    const safe = safeLogger(mine);
    safe.info('m', { password: 'p4ss-word', n: 1 });
    safe.debug('d');
    expect(calls).toEqual([['m', { password: '[redacted]', n: 1 }], ['d']]);
  });
});
