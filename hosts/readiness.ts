/**
 * Readiness checks: wait until a host serves what a test needs (`host.waitFor`, and `waitFor`
 * on checkout). Every check runs from this process against the host's reachable address
 * (`host.address(port)`) or as a command on the host; the last failure of each is kept for the
 * message.
 * @module
 */
import { connect } from 'node:net';
import { type BrokerErrorOptions, TimeoutError, UserInputError, messageOf } from '../lib/errors.js';
import { quote } from './quote.js';
import type { ExecOptions, Result } from './result.js';

/** A readiness check (`host.waitFor`, checkout `waitFor`) never passed within its limit. */
export class ReadinessError extends TimeoutError {
  /** The check that never passed, described (e.g. `http GET :8080/ answers 2xx`). */
  readonly check: string;
  /** What the check saw the last time it ran. */
  readonly lastResult: string;
  /** The host it waited on. */
  readonly host: string;
  constructor(message: string, timeoutMs: number, details: { check: string; lastResult: string; host: string }, options: BrokerErrorOptions = {}) {
    super(message, timeoutMs, options);
    this.check = details.check;
    this.lastResult = details.lastResult;
    this.host = details.host;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), timeoutMs: this.timeoutMs, check: this.check, lastResult: this.lastResult, host: this.host };
  }
}

/** Where this process connects to a port of a host. */
export interface Address {
  host: string;
  port: number;
}

/** An HTTP readiness check. */
export interface HttpCheck {
  port: number;
  /** Default `/`. */
  path?: string;
  /** Status wanted: one, a list, or (default) any 2xx. */
  status?: number | readonly number[];
  /** Text the body must contain, or a pattern it must match. */
  body?: string | RegExp;
  /** Use https (the certificate is not checked: test hosts have their own). */
  https?: boolean;
  method?: string;
  headers?: Record<string, string>;
}

/**
 * What to wait for. `{ port }`: a TCP connection from this process to the host's reachable
 * address is accepted and held. `{ http }`: a request answers as wanted. `{ command }`: a command
 * on the host exits 0. `{ file, contains }`: a file on the host contains a text (a log line).
 * `{ all }` / `{ any }` compose them; a list is `all`.
 */
export type ReadinessCheck =
  | { port: number }
  | { http: HttpCheck }
  | { command: string }
  | { file: string; contains: string | RegExp }
  | { all: readonly ReadinessCheck[] }
  | { any: readonly ReadinessCheck[] };

/** Options of `host.waitFor`. */
export interface WaitOptions {
  /** Milliseconds in all (default 60000). */
  timeout?: number;
  /** Milliseconds between tries (default 250). */
  interval?: number;
  signal?: AbortSignal;
}

/** What readiness needs of a host (a `Host` is one). */
export interface ReadinessTarget {
  readonly name: string;
  address(port: number): Address;
  execute(command: string, options?: ExecOptions): Promise<Result>;
}

/** The outcome of one try: passed, or why not. */
interface Outcome {
  ok: boolean;
  detail: string;
  /** The check inside an `all` that failed, described. */
  failing?: string;
}

/** Longest a single try may take. */
const TRY_LIMIT = 5000;

/** A short description of a check, for messages. */
export function describeCheck(check: ReadinessCheck): string {
  if ('all' in check) return `all of (${check.all.map(describeCheck).join('; ')})`;
  if ('any' in check) return `any of (${check.any.map(describeCheck).join('; ')})`;
  if ('http' in check) {
    const h = check.http;
    const want = h.status === undefined ? '2xx' : [h.status].flat().join('|');
    return `${h.method ?? 'GET'} ${h.https ? 'https' : 'http'} :${h.port}${h.path ?? '/'} answers ${want}${h.body !== undefined ? ` with ${String(h.body)} in the body` : ''}`;
  }
  if ('port' in check) return `port ${check.port} accepts connections`;
  if ('command' in check) return `\`${check.command}\` exits 0`;
  return `${check.file} contains ${String(check.contains)}`;
}

/** Checks a check's shape up front, so a typo fails at once rather than after the timeout. */
export function validateCheck(check: unknown, where = 'waitFor'): ReadinessCheck {
  const bad = (why: string): never => {
    throw new UserInputError(`${where}: ${why}; use { port }, { http: { port, path } }, { command }, { file, contains }, { all: [...] } or { any: [...] }.`);
  };
  if (check === null || typeof check !== 'object') return bad(`${JSON.stringify(check)} is not a readiness check`);
  const c = check as Record<string, unknown>;
  const port = (p: unknown): void => {
    if (!Number.isInteger(p) || (p as number) < 1 || (p as number) > 65535) bad(`port ${JSON.stringify(p)} is not a port number`);
  };
  if (Array.isArray(c.all) || Array.isArray(c.any)) for (const inner of (c.all ?? c.any) as unknown[]) validateCheck(inner, where);
  else if (c.http !== undefined) port((c.http as { port?: unknown } | null)?.port);
  else if (c.port !== undefined) port(c.port);
  else if (c.command !== undefined) typeof c.command === 'string' && c.command.trim() ? undefined : bad('command must be a non-empty string');
  else if (c.file !== undefined) typeof c.file === 'string' && c.contains !== undefined ? undefined : bad('a file check needs { file, contains }');
  else bad(`${JSON.stringify(check)} is not a readiness check`);
  return check as ReadinessCheck;
}

/** Runs a check once. */
export async function tryCheck(host: ReadinessTarget, check: ReadinessCheck, limit = TRY_LIMIT): Promise<Outcome> {
  try {
    if ('all' in check) {
      for (const inner of check.all) {
        const o = await tryCheck(host, inner, limit);
        if (!o.ok) return { ok: false, detail: o.detail, failing: o.failing ?? describeCheck(inner) };
      }
      return { ok: true, detail: 'all passed' };
    }
    if ('any' in check) {
      const misses: string[] = [];
      for (const inner of check.any) {
        const o = await tryCheck(host, inner, limit);
        if (o.ok) return o;
        misses.push(`${describeCheck(inner)}: ${o.detail}`);
      }
      return { ok: false, detail: misses.join('; ') };
    }
    if ('http' in check) return await tryHttp(host, check.http, limit);
    if ('port' in check) return await tryPort(host.address(check.port), limit);
    if ('command' in check) {
      const r = await host.execute(check.command, { timeout: limit, check: false });
      return r.status === 0 ? { ok: true, detail: 'exit 0' } : { ok: false, detail: `exit status ${r.status}${lastLine(r.stderr || r.stdout)}` };
    }
    const { file, contains } = check;
    if (typeof contains === 'string') {
      const r = await host.execute(`grep -F -q -e ${quote(contains)} -- ${quote(file)}`, { timeout: limit, check: false });
      if (r.status === 0) return { ok: true, detail: 'found' };
      return { ok: false, detail: r.status === 1 ? 'not in the file yet' : `cannot read it${lastLine(r.stderr) || ` (status ${r.status})`}` };
    }
    const r = await host.execute(`cat -- ${quote(file)}`, { timeout: limit, check: false });
    if (r.status !== 0) return { ok: false, detail: `cannot read it${lastLine(r.stderr) || ` (status ${r.status})`}` };
    return contains.test(r.stdout) ? { ok: true, detail: 'found' } : { ok: false, detail: 'no line matches yet' };
  } catch (error) {
    // A bad port or another mistake of the caller is not something to wait out.
    if (error instanceof UserInputError) throw error;
    return { ok: false, detail: messageOf(error) };
  }
}

function lastLine(text: string): string {
  const line = text.trim().split('\n').pop()?.slice(0, 200);
  return line ? `: ${line}` : '';
}

/**
 * Connects and holds the connection briefly: a port forwarder (a container engine's, a VM's) may
 * accept a connection and drop it at once while nothing listens behind it.
 */
function tryPort(address: Address, limit: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect({ host: address.host, port: address.port });
    let settled = false;
    const done = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => done({ ok: false, detail: `no answer from ${address.host}:${address.port} within ${limit} ms` }), limit);
    socket.once('error', (e) => done({ ok: false, detail: `${address.host}:${address.port}: ${e.message}` }));
    socket.once('close', () =>
      done({ ok: false, detail: `${address.host}:${address.port} accepted the connection and closed it at once (nothing listening behind it yet?)` }),
    );
    socket.once('connect', () => setTimeout(() => done({ ok: true, detail: 'connected' }), 100));
  });
}

async function tryHttp(host: ReadinessTarget, h: HttpCheck, limit: number): Promise<Outcome> {
  const { host: addr, port } = host.address(h.port);
  const url = `${h.https ? 'https' : 'http'}://${addr.includes(':') ? `[${addr}]` : addr}:${port}${h.path ?? '/'}`;
  let response: Response;
  try {
    response = await fetch(url, { method: h.method ?? 'GET', headers: h.headers ?? {}, signal: AbortSignal.timeout(limit), redirect: 'manual' });
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    return { ok: false, detail: `${url}: ${cause ? messageOf(cause) : messageOf(error)}` };
  }
  const text = await response.text().catch(() => '');
  const wanted = h.status === undefined ? response.status >= 200 && response.status < 300 : [h.status].flat().includes(response.status);
  if (!wanted) return { ok: false, detail: `${url} answered ${response.status}${text ? `: ${text.slice(0, 200).trim()}` : ''}` };
  if (h.body !== undefined && !(typeof h.body === 'string' ? text.includes(h.body) : h.body.test(text)))
    return { ok: false, detail: `${url} answered ${response.status} without ${String(h.body)} in the body (${text.slice(0, 200).trim()})` };
  return { ok: true, detail: `${response.status}` };
}

/**
 * Tries a check (a list: all of them) every `interval` until it passes; a ReadinessError names
 * the check and its last result when `timeout` runs out.
 */
export async function waitUntilReady(host: ReadinessTarget, given: ReadinessCheck | readonly ReadinessCheck[], options: WaitOptions = {}): Promise<void> {
  const check: ReadinessCheck = Array.isArray(given) ? { all: given as readonly ReadinessCheck[] } : (given as ReadinessCheck);
  validateCheck(check);
  const timeout = options.timeout ?? 60_000;
  const interval = options.interval ?? 250;
  const deadline = Date.now() + timeout;
  let last: Outcome = { ok: false, detail: 'never ran' };
  for (;;) {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
    last = await tryCheck(host, check, Math.max(1, Math.min(TRY_LIMIT, deadline - Date.now())));
    if (last.ok) return;
    const left = deadline - Date.now();
    if (left <= 0) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, left)));
    if (Date.now() >= deadline) {
      last = await tryCheck(host, check, TRY_LIMIT).catch(() => last);
      if (last.ok) return;
      break;
    }
  }
  const what = last.failing ?? describeCheck(check);
  throw new ReadinessError(
    `${host.name} was not ready within ${timeout} ms: ${what} never passed; last result: ${last.detail}. Check that the service starts, or raise the timeout.`,
    timeout,
    { check: what, lastResult: last.detail, host: host.name },
  );
}
