/**
 * A small HTTP client for providers that talk to a REST service (Tower, Beaker, Foreman,
 * mr-provisioner, ...): `fetch` with a per-request timeout, retries on connection errors, 5xx and
 * 429 (waiting as long as `Retry-After` asks, within a limit), the instance's CA file or
 * `insecure`, the `HTTPS_PROXY` / `NO_PROXY` variables, JSON bodies validated by zod, and errors
 * that carry the service's own message (scrubbed of secrets) as a {@link ProviderError}. A
 * certificate the client does not trust is a {@link TlsError} at once, never retried.
 * @module
 */
import type { z } from 'zod';
import { BrokerError, ProviderError } from './errors.js';
import { dispatchingFetch, proxyEnv, type TlsOptions } from './http-dispatcher.js';
import { tlsErrorOf } from './http-tls.js';
import { scrub } from './secrets.js';
import { formatIssues } from './settings.js';

/** Query parameters; `undefined` values are left out, arrays repeat the key. */
export type Query = Record<string, string | number | boolean | undefined | readonly (string | number)[]>;

/** Options of an {@link HttpClient}. */
export interface HttpClientOptions {
  /** Base URL of the service, e.g. `https://tower.example.com/api/v2`. */
  baseUrl: string;
  /** Provider name used in error messages (`[beaker] ...`). */
  provider: string;
  /** Headers sent with every request (authorization, cookies); called per request. */
  headers?: () => Record<string, string> | Promise<Record<string, string>>;
  /** Limit for one request, in ms (default 60 s). */
  timeoutMs?: number;
  /** Extra attempts after a connection error, 5xx or 429 (default 3). */
  retries?: number;
  /** First delay between attempts, doubled each time (default 500 ms); a `Retry-After` answer sets its own. */
  retryDelayMs?: number;
  /**
   * Longest `Retry-After` waited for (default 120 s). A service asking for longer gets no retry:
   * the error says how long it asked for.
   */
  maxRetryAfterMs?: number;
  /** CA file to trust and `insecure` (see `ca_file` / `insecure` in the instance settings). */
  tls?: TlsOptions;
  /** Where `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` are read (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /**
   * Pulls the service's own error message out of an error response body (parsed JSON when the
   * body was JSON, else undefined). The default looks at common keys (`detail`, `message`,
   * `error`, `errors`, `description`).
   */
  errorMessage?: (json: unknown, text: string, status: number) => string | undefined;
  /** What the user should do after a 401/403, e.g. "check beaker.username and its password". */
  authHint?: string;
  /** `fetch` to use instead of the built-in transport (then `tls` and the proxy variables are up to it). */
  fetch?: typeof fetch;
}

/** One request. */
export interface RequestOptions {
  query?: Query;
  /** A JSON body (sets Content-Type). */
  json?: unknown;
  /** Any other body (FormData, string, Blob...). */
  body?: NonNullable<Parameters<typeof fetch>[1]>['body'];
  headers?: Record<string, string>;
  /** Statuses that count as success (default: 2xx). */
  ok?: (status: number) => boolean;
  /** Whether the request may be sent again after a 5xx. Default: true for GET, HEAD, PUT, DELETE. */
  idempotent?: boolean;
  /** Aborts the request (and its retries). */
  signal?: AbortSignal;
  /** Overrides the client's timeout for this request. */
  timeoutMs?: number;
}

/** A response with its body read as text. */
export interface HttpResponse {
  status: number;
  headers: Headers;
  text: string;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);

/** A minimal, reusable REST client. Safe to share between concurrent checkouts. */
export class HttpClient {
  readonly baseUrl: string;
  readonly provider: string;
  private readonly options: HttpClientOptions;
  private readonly fetch: typeof fetch;

  constructor(options: HttpClientOptions) {
    this.options = options;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.provider = options.provider;
    this.fetch = options.fetch ?? dispatchingFetch(options.tls ?? {}, options.env ?? process.env);
  }

  /** Full URL of a path (absolute URLs are kept as they are). */
  url(path: string, query?: Query): string {
    const url = new URL(/^https?:\/\//.test(path) ? path : this.baseUrl + (path.startsWith('/') ? path : `/${path}`));
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const item of v) url.searchParams.append(k, String(item));
      else url.searchParams.set(k, String(v));
    }
    return url.toString();
  }

  /**
   * Sends a request, retrying where it is safe; throws a ProviderError unless `ok(status)`.
   * Retried: connection errors, a timeout or 5xx of an idempotent request, and 429 of any request
   * (the service refused it without doing it). `Retry-After` sets the wait when present.
   */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const upper = method.toUpperCase();
    const retries = this.options.retries ?? 3;
    const idempotent = options.idempotent ?? IDEMPOTENT.has(upper);
    let delay = this.options.retryDelayMs ?? 500;
    const label = `${upper} ${this.url(path).replace(/\?.*$/, '')}`;
    const cancelled = (cause?: unknown) => new ProviderError(this.provider, `${label} was cancelled.`, { cause });
    const pause = async (ms: number) => {
      await sleep(ms, options.signal);
      if (options.signal?.aborted) throw cancelled(options.signal.reason);
      delay *= 2;
    };
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.send(upper, path, options);
      } catch (error) {
        if (BrokerError.isInstance(error)) throw error;
        if (options.signal?.aborted) throw cancelled(error);
        const tls = tlsErrorOf(error, this.provider, new URL(this.url(path)));
        if (tls) throw tls;
        const timedOut = (error as Error).name === 'TimeoutError';
        // A request that timed out may have been processed: only repeat idempotent ones.
        if (attempt < retries && (!timedOut || idempotent)) {
          await pause(delay);
          continue;
        }
        throw new ProviderError(
          this.provider,
          timedOut
            ? `${label} got no answer within ${Math.round((options.timeoutMs ?? this.options.timeoutMs ?? 60_000) / 1000)} s; check that the service is up, or raise its request timeout.`
            : `cannot reach ${this.baseUrl}${this.viaProxy(path)} (${scrub(describeNetworkError(error))}) after ${attempt + 1} attempt(s); check the URL in the settings and that the service is up.`,
          { cause: error, retryable: true },
        );
      }
      const text = await response.text();
      const ok = options.ok ?? ((s: number) => s >= 200 && s < 300);
      if (ok(response.status)) return { status: response.status, headers: response.headers, text };
      const status = response.status;
      const retryable = status === 429 || (status >= 500 && idempotent);
      const asked = status === 429 || status === 503 ? retryAfterMs(response.headers.get('retry-after')) : undefined;
      const limit = this.options.maxRetryAfterMs ?? 120_000;
      if (retryable && attempt < retries && (asked === undefined || asked <= limit)) {
        await pause(asked ?? delay);
        continue;
      }
      throw this.statusError(label, status, text, asked !== undefined && asked > limit ? asked : undefined);
    }
  }

  /** Sends a request and validates its JSON body with `schema`. */
  async json<S extends z.ZodType>(method: string, path: string, schema: S, options: RequestOptions = {}): Promise<z.output<S>> {
    const response = await this.request(method, path, { ...options, headers: { Accept: 'application/json', ...options.headers } });
    return this.parse(`${method.toUpperCase()} ${path}`, response.text, schema);
  }

  /** Parses and validates a JSON text, with a ProviderError that says what did not match. */
  parse<S extends z.ZodType>(what: string, text: string, schema: S): z.output<S> {
    let data: unknown;
    try {
      data = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new ProviderError(
        this.provider,
        `${what} answered with something that is not JSON (${JSON.stringify(scrub(text.slice(0, 120)))}); check that the URL points at the service's API.`,
      );
    }
    const result = schema.safeParse(data);
    if (!result.success) {
      throw new ProviderError(
        this.provider,
        `${what} answered with an unexpected shape (${formatIssues(result.error, 'response')}); the service version may not be supported.`,
      );
    }
    return result.data;
  }

  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { ...(await this.options.headers?.()), ...options.headers };
    let body = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers['Content-Type'] ??= 'application/json';
    }
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.options.timeoutMs ?? 60_000);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    return this.fetch(this.url(path, options.query), { method, headers, body: body ?? null, signal, redirect: 'follow' });
  }

  /** ` through the proxy HOST` when the request's scheme has a proxy variable set (for messages; no credentials). */
  private viaProxy(path: string): string {
    if (this.options.fetch) return '';
    const proxies = proxyEnv(this.options.env ?? process.env);
    const proxy = this.url(path).startsWith('https:') ? proxies.httpsProxy || proxies.httpProxy : proxies.httpProxy;
    if (!proxy) return '';
    try {
      return ` (through the proxy ${new URL(proxy).host} unless NO_PROXY matches)`;
    } catch {
      return '';
    }
  }

  private statusError(label: string, status: number, text: string, askedMs?: number): ProviderError {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const message = (this.options.errorMessage ?? defaultErrorMessage)(json, text, status) ?? defaultErrorMessage(json, text, status);
    const said = message ? `: ${scrub(message)}` : '';
    const hint =
      status === 401
        ? `the service did not accept the credentials; ${this.options.authHint ?? 'check the username, password or token in the settings'}.`
        : status === 403
          ? `the account is not allowed to do this; ${this.options.authHint ?? 'check its permissions on the service'}.`
          : status === 404
            ? 'it was not found; check the name or id.'
            : status === 429 || askedMs !== undefined
              ? askedMs !== undefined
                ? `the service asks to wait ${Math.ceil(askedMs / 1000)} s before trying again, longer than hostbroker waits; try again later${status === 429 ? ' or lower the concurrency' : ''}.`
                : 'the service is throttling requests; try again later or lower the concurrency.'
              : status >= 500
                ? 'the service failed; try again later, or ask its administrators.'
                : 'check the arguments.';
    return new ProviderError(this.provider, `${label} failed with HTTP ${status}${said}. ${capitalize(hint)}`, {
      status,
      retryable: status >= 500 || status === 429,
    });
  }
}

/** Finds an error message in common API error bodies. */
export function defaultErrorMessage(json: unknown, text: string, _status: number): string | undefined {
  const pick = (v: unknown): string | undefined => {
    if (typeof v === 'string' && v.trim()) return v.trim();
    if (Array.isArray(v)) {
      const parts = v.map(pick).filter((s): s is string => !!s);
      return parts.length ? parts.join('; ') : undefined;
    }
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      for (const key of ['detail', 'message', 'error', 'errors', 'description', 'msg']) {
        const found = pick(o[key]);
        if (found) return found;
      }
      // Field errors: { name: ["is required"] }
      const fields = Object.entries(o)
        .map(([k, val]) => {
          const m = pick(val);
          return m ? `${k}: ${m}` : undefined;
        })
        .filter((s): s is string => !!s);
      return fields.length ? fields.join('; ') : undefined;
    }
    return undefined;
  };
  const fromJson = pick(json);
  if (fromJson) return fromJson.slice(0, 500);
  const plain = text
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return plain ? plain.slice(0, 300) : undefined;
}

/**
 * Milliseconds a `Retry-After` value asks to wait: delay-seconds or an HTTP-date (a past date is
 * 0); undefined when absent or not valid.
 */
export function retryAfterMs(value: string | null | undefined, now: number = Date.now()): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at) || !/[a-z]/i.test(v)) return undefined;
  return Math.max(0, at - now);
}

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message ?? String(error);
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Waits `ms`, or less if `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
