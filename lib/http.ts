/**
 * A small JSON-over-HTTP client for providers that drive REST services (Tower/AWX, Foreman,
 * Beaker, mr-provisioner): Node's own `fetch` with a timeout per request, retries on connection
 * errors and 5xx (only where repeating the request is safe), zod validation of every answer, and
 * errors that carry the service's own message. Secrets never reach a message: every text goes
 * through {@link scrub}, and credentials live only in headers.
 * @module
 */
import type { z } from 'zod';
import { ProviderError, TimeoutError } from './errors.js';
import { scrub } from './secrets.js';
import { formatIssues } from './settings.js';

/** HTTP methods the client sends. */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * When a failed request may be sent again:
 * - `always`: connection errors, timeouts, 429 and 5xx (idempotent requests);
 * - `safe`: only failures where the service cannot have acted (connection refused, DNS, 429, 503);
 * - `never`.
 */
export type RetryPolicy = 'always' | 'safe' | 'never';

/** Options of an {@link HttpClient}. */
export interface HttpClientOptions {
  /** Provider name, used in error messages (`[tower] ...`). */
  provider: string;
  /** Base URL; request paths are resolved against it. */
  baseUrl: string;
  /** Headers sent with every request (authorization goes here, never into a URL). */
  headers?: Record<string, string>;
  /** Limit of one request attempt, in ms. Default 60 s. */
  timeoutMs?: number;
  /** Further attempts after a retryable failure. Default 3. */
  retries?: number;
  /** First pause between attempts, doubled each time (with jitter), at most 30 s. Default 500 ms. */
  retryDelayMs?: number;
  /** Pulls the service's own message out of an error body. Default: {@link serviceMessage}. */
  errorMessage?: (body: unknown) => string | undefined;
  /** What to tell the user to do for a status (401 → check the token, ...). */
  hints?: Partial<Record<number, string>>;
  /** Aborts every request of this client (e.g. the operation's signal). */
  signal?: AbortSignal;
  /** Replaces `fetch` (tests). */
  fetch?: typeof fetch;
}

/** Options of one request. */
export interface RequestOptions<S extends z.ZodType | undefined = undefined> {
  /** Query parameters; arrays repeat the key, undefined values are left out. */
  query?: Record<string, string | number | boolean | undefined | readonly (string | number)[]>;
  /** JSON body. */
  body?: unknown;
  /** Validates the answer; a mismatch is a ProviderError naming the fields. */
  schema?: S;
  /** Statuses that are not errors besides 2xx (e.g. 404 for an idempotent delete). */
  accept?: readonly number[];
  /** Overrides the retry policy (default `always` for GET/PUT/DELETE, `safe` for POST/PATCH). */
  retry?: RetryPolicy;
  /** Aborts this request. */
  signal?: AbortSignal;
}

/** What a request returns: the status and the (validated) body. */
export interface HttpResponse<T> {
  status: number;
  body: T;
}

/** Extracts the message a REST service put in an error body (AWX, Foreman, Beaker, Django...). */
export function serviceMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return body.trim().slice(0, 500) || undefined;
  if (!body || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  const error = b.error;
  if (error && typeof error === 'object') {
    const e = error as Record<string, unknown>;
    if (Array.isArray(e.full_messages) && e.full_messages.length) return e.full_messages.map(String).join('; ');
    if (typeof e.message === 'string') return e.message;
  }
  for (const key of ['detail', 'message', 'error', 'description', 'msg']) {
    if (typeof b[key] === 'string' && b[key]) return b[key] as string;
  }
  // DRF validation errors: { field: ["why"] } or { __all__: [...] }.
  const fields = Object.entries(b)
    .filter(([, v]) => Array.isArray(v) && v.every((x) => typeof x === 'string'))
    .map(([k, v]) => `${k}: ${(v as string[]).join(', ')}`);
  return fields.length ? fields.join('; ') : undefined;
}

const CONNECT_NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** A JSON client bound to one service. */
export class HttpClient {
  readonly options: Required<Pick<HttpClientOptions, 'provider' | 'baseUrl' | 'timeoutMs' | 'retries' | 'retryDelayMs'>> & HttpClientOptions;

  constructor(options: HttpClientOptions) {
    this.options = { timeoutMs: 60_000, retries: 3, retryDelayMs: 500, ...options, baseUrl: options.baseUrl.replace(/\/*$/, '/') };
  }

  /** GET a path and validate the answer. */
  async get<S extends z.ZodType>(path: string, schema: S, options: Omit<RequestOptions<S>, 'schema' | 'body'> = {}): Promise<z.output<S>> {
    return (await this.request('GET', path, { ...options, schema })).body as z.output<S>;
  }

  /** POST a JSON body and validate the answer. */
  async post<S extends z.ZodType>(path: string, body: unknown, schema: S, options: Omit<RequestOptions<S>, 'schema' | 'body'> = {}): Promise<z.output<S>> {
    return (await this.request('POST', path, { ...options, body, schema })).body as z.output<S>;
  }

  /** Follows a paginated list: `next` links (AWX) or `page`/`per_page` (Foreman) are the caller's `nextOf`. */
  async *pages<S extends z.ZodType>(
    path: string,
    schema: S,
    nextOf: (page: z.output<S>, url: string) => string | undefined,
    options: Omit<RequestOptions<S>, 'schema' | 'body'> = {},
  ): AsyncGenerator<z.output<S>> {
    let url: string | undefined = path;
    let query = options.query;
    for (let guard = 0; url && guard < 1000; guard++) {
      const page: z.output<S> = await this.get(url, schema, { ...options, query });
      yield page;
      url = nextOf(page, url);
      query = undefined; // next links carry their own query
    }
  }

  /** Sends a request; throws a ProviderError (or TimeoutError) when it fails after the retries. */
  async request<S extends z.ZodType | undefined = undefined>(
    method: HttpMethod,
    path: string,
    options: RequestOptions<S> = {},
  ): Promise<HttpResponse<S extends z.ZodType ? z.output<S> : unknown>> {
    const url = this.url(path, options.query);
    const label = `${method} ${url.pathname}`;
    const policy = options.retry ?? (method === 'POST' || method === 'PATCH' ? 'safe' : 'always');
    const doFetch = this.options.fetch ?? fetch;
    let attempt = 0;
    for (;;) {
      const outer = [this.options.signal, options.signal].filter((s): s is AbortSignal => s !== undefined);
      for (const s of outer) if (s.aborted) throw this.aborted(label, s);
      const timeout = AbortSignal.timeout(this.options.timeoutMs);
      const signal = AbortSignal.any([timeout, ...outer]);
      let failure: { error: ProviderError | TimeoutError; retry: boolean };
      try {
        const response = await doFetch(url, {
          method,
          headers: {
            accept: 'application/json',
            ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
            ...this.options.headers,
          },
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          signal,
          redirect: 'follow',
        });
        const text = await response.text();
        const body = parseBody(text, response.headers.get('content-type'));
        if (response.ok || options.accept?.includes(response.status)) {
          return { status: response.status, body: this.validate(label, options.schema, body, response.ok) as never };
        }
        const retryable = response.status === 429 || response.status >= 500;
        const error = this.statusError(label, response.status, body);
        failure = { error, retry: retryable && (policy === 'always' || (policy === 'safe' && (response.status === 429 || response.status === 503))) };
      } catch (error) {
        if (error instanceof ProviderError) throw error;
        for (const s of outer) if (s.aborted) throw this.aborted(label, s);
        const code = causeCode(error);
        if (timeout.aborted) {
          failure = {
            error: new TimeoutError(`[${this.options.provider}] ${label} got no answer within ${this.options.timeoutMs} ms; check that ${this.options.baseUrl} is reachable, or raise requestTimeout.`, this.options.timeoutMs),
            retry: policy === 'always',
          };
        } else {
          failure = {
            error: new ProviderError(
              this.options.provider,
              scrub(`${label} could not reach ${this.options.baseUrl}${code ? ` (${code})` : ''}: ${causeMessage(error)}; check the base URL and that the service is up.`),
              { retryable: true, cause: error },
            ),
            retry: policy === 'always' || (policy === 'safe' && code !== undefined && CONNECT_NOT_SENT.has(code)),
          };
        }
      }
      if (!failure.retry || attempt >= this.options.retries) throw failure.error;
      attempt++;
      const delay = Math.min(30_000, this.options.retryDelayMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
      await sleep(delay, AbortSignal.any(outer.length ? outer : [new AbortController().signal]));
    }
  }

  /** Absolute URL of a path (relative paths resolve against the base URL). */
  url(path: string, query?: RequestOptions['query']): URL {
    const url = new URL(path.replace(/^\/(?!\/)/, ''), this.options.baseUrl);
    if (/^https?:\/\//.test(path) || path.startsWith('/')) {
      // Absolute paths (e.g. AWX `next` links) keep their own path but stay on the base host.
      const abs = new URL(path, this.options.baseUrl);
      url.pathname = abs.pathname;
      url.search = abs.search;
    }
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const item of v) url.searchParams.append(k, String(item));
      else url.searchParams.set(k, String(v));
    }
    return url;
  }

  private validate(label: string, schema: z.ZodType | undefined, body: unknown, ok: boolean): unknown {
    if (!schema || !ok) return body;
    const result = schema.safeParse(body);
    if (result.success) return result.data;
    throw new ProviderError(
      this.options.provider,
      scrub(`${label} answered with an unexpected body (${formatIssues(result.error, 'response')}); check that ${this.options.baseUrl} is the service's API and that its version is supported.`),
      { retryable: false },
    );
  }

  private statusError(label: string, status: number, body: unknown): ProviderError {
    const said = this.options.errorMessage?.(body) ?? serviceMessage(body);
    const hint = this.options.hints?.[status] ?? defaultHint(status);
    return new ProviderError(this.options.provider, scrub(`${label} failed with HTTP ${status}${said ? `: ${said}` : ''}${hint ? ` (${hint})` : ''}`), {
      status,
      retryable: status === 429 || status >= 500,
    });
  }

  private aborted(label: string, signal: AbortSignal): Error {
    const reason: unknown = signal.reason;
    if (reason instanceof Error && reason.name !== 'AbortError') return reason;
    return new ProviderError(this.options.provider, `${label} was given up (the operation was aborted).`);
  }
}

function defaultHint(status: number): string | undefined {
  if (status === 401) return 'check the credentials in settings';
  if (status === 403) return 'the user lacks permission for this';
  if (status === 404) return 'not found';
  if (status === 429) return 'rate limited; try again later';
  if (status >= 500) return 'the service failed; try again later';
  return undefined;
}

function parseBody(text: string, contentType: string | null): unknown {
  if (!text) return undefined;
  if (contentType?.includes('json') || /^\s*[[{"]/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

function causeCode(error: unknown): string | undefined {
  let e: unknown = error;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function causeMessage(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) return cause.message;
  return error instanceof Error ? error.message : String(error);
}

/** Waits `ms`, or rejects when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `Authorization` header for HTTP Basic auth. */
export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}
