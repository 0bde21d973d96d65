/**
 * 429 and 503 against a real HTTP server: `Retry-After` in seconds or as an HTTP-date sets the
 * wait, a limit bounds it, attempts are bounded, and an abort ends the wait.
 */
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../lib/errors.js';
import { HttpClient, retryAfterMs } from '../../lib/http.js';
import { rejection } from '../helpers/rejection.js';
import { startHttpServer, type TestServer } from '../helpers/tls.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A server answering `answers[hit - 1]` (the last one from then on), noting when each request came. */
async function scripted(answers: { status: number; retryAfter?: string | (() => string) }[]): Promise<{ server: TestServer; at: number[] }> {
  const at: number[] = [];
  server = await startHttpServer((_req, res: ServerResponse, hit) => {
    at.push(Date.now());
    const answer = answers[Math.min(hit, answers.length) - 1]!;
    res.statusCode = answer.status;
    if (answer.retryAfter) res.setHeader('retry-after', typeof answer.retryAfter === 'function' ? answer.retryAfter() : answer.retryAfter);
    res.setHeader('content-type', 'application/json');
    res.end(answer.status === 200 ? '{"ok":true}' : '{"detail":"slow down"}');
  });
  return { server, at };
}

// A backoff far longer than the test's limit: a retry that comes at all came from Retry-After.
const client = (url: string, extra: Partial<ConstructorParameters<typeof HttpClient>[0]> = {}) =>
  new HttpClient({ baseUrl: url, provider: 'tower', env: {}, retries: 3, retryDelayMs: 600_000, ...extra });

describe('Retry-After', () => {
  it('429 with Retry-After in seconds waits that long, then succeeds', async () => {
    const { server, at } = await scripted([{ status: 429, retryAfter: '1' }, { status: 200 }]);
    const response = await client(server.url).request('GET', '/api/v2/me/');
    expect(response.status).toBe(200);
    expect(server.requests).toHaveLength(2);
    // Not earlier than asked (the server's own clock).
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(950);
  });

  it('429 with an HTTP-date waits until then', async () => {
    const { server } = await scripted([{ status: 429, retryAfter: () => new Date(Date.now() + 1000).toUTCString() }, { status: 200 }]);
    expect((await client(server.url).request('GET', '/')).status).toBe(200);
    expect(server.requests).toHaveLength(2);
  });

  it('429 is retried for a POST too: the service refused it without doing it', async () => {
    const { server } = await scripted([{ status: 429, retryAfter: '0' }, { status: 200 }]);
    expect((await client(server.url).request('POST', '/launch/', { json: { a: 1 } })).status).toBe(200);
    expect(server.requests.map((r) => r.method)).toEqual(['POST', 'POST']);
  });

  it('503 with Retry-After is retried for a GET', async () => {
    const { server } = await scripted([{ status: 503, retryAfter: '0' }, { status: 503, retryAfter: '0' }, { status: 200 }]);
    expect((await client(server.url).request('GET', '/')).status).toBe(200);
    expect(server.requests).toHaveLength(3);
  });

  it('503 of a POST is not repeated (it may have been processed)', async () => {
    const { server } = await scripted([{ status: 503, retryAfter: '0' }, { status: 200 }]);
    const error = await rejection<ProviderError>(client(server.url).request('POST', '/'));
    expect(error.status).toBe(503);
    expect(error.retryable).toBe(true);
    expect(server.requests).toHaveLength(1);
  });

  it('429 without Retry-After backs off by the client delay', async () => {
    const { server } = await scripted([{ status: 429 }, { status: 200 }]);
    expect((await client(server.url, { retryDelayMs: 1 }).request('GET', '/')).status).toBe(200);
    expect(server.requests).toHaveLength(2);
  });

  it('attempts are bounded: a service that keeps answering 429 gets retries + 1 requests, then a 429 error', async () => {
    const { server } = await scripted([{ status: 429, retryAfter: '0' }]);
    const error = await rejection<ProviderError>(client(server.url, { retries: 2 }).request('GET', '/'));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe(429);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/throttling/);
    expect(server.requests).toHaveLength(3);
  });

  it('a Retry-After beyond the limit is not waited for: one request, and the error says how long the service asked', async () => {
    const { server } = await scripted([{ status: 429, retryAfter: '3600' }, { status: 200 }]);
    const error = await rejection<ProviderError>(client(server.url, { maxRetryAfterMs: 30_000 }).request('GET', '/'));
    expect(error.status).toBe(429);
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('asks to wait 3600 s');
    expect(server.requests).toHaveLength(1);
  });

  it('an abort ends the wait: the request is cancelled, not sent again', async () => {
    const controller = new AbortController();
    server = await startHttpServer((_req, res) => {
      res.statusCode = 429;
      res.setHeader('retry-after', '100');
      res.end();
      // The client is now waiting 100 s.
      setImmediate(() => controller.abort(new Error('test gave up')));
    });
    const error = await rejection<ProviderError>(client(server.url).request('GET', '/', { signal: controller.signal }));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toMatch(/was cancelled/);
    expect(server.requests).toHaveLength(1);
  });

  it('parses delay-seconds and HTTP-dates, and ignores what is neither', () => {
    const now = Date.parse('Tue, 01 Dec 2026 18:00:00 GMT');
    expect(retryAfterMs('120', now)).toBe(120_000);
    expect(retryAfterMs(' 0 ', now)).toBe(0);
    expect(retryAfterMs('Tue, 01 Dec 2026 18:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('Tue, 01 Dec 2026 17:00:00 GMT', now)).toBe(0);
    for (const bad of [null, undefined, '', '-5', '1.5', 'soon', '12:00']) expect(retryAfterMs(bad, now)).toBeUndefined();
  });
});
