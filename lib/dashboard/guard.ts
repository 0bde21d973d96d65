/**
 * The checks every dashboard request passes before a route sees it: the Host header (so a DNS
 * rebinding page cannot read a loopback dashboard), Origin and fetch metadata on POST (CSRF),
 * JSON bodies only, and the security headers of every response.
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BrokerError } from '../errors.js';
import { scrub } from '../secrets.js';

/** Headers on every response: no inline script or style, no framing, no referrer, no sniffing. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** An error answered with an HTTP status and a stable code. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const STATUS_OF_CODE: Record<string, number> = { USER_INPUT: 400, PROVIDER: 502, TIMEOUT: 504, HOST_CONNECTION: 502, INVENTORY: 503, ABORTED: 409 };

/** The status, code and message an error is answered with (messages scrubbed). */
export function errorBody(error: unknown): { status: number; body: { error: { code: string; message: string } } } {
  if (error instanceof HttpError) return { status: error.status, body: { error: { code: error.code, message: error.message } } };
  if (BrokerError.isInstance(error)) return { status: STATUS_OF_CODE[error.code] ?? 500, body: { error: { code: error.code, message: scrub(error.message) } } };
  const message = error instanceof SyntaxError ? `the request body is not JSON: ${error.message}` : 'internal error; see the log of `hostbroker serve`.';
  return { status: error instanceof SyntaxError ? 400 : 500, body: { error: { code: error instanceof SyntaxError ? 'USER_INPUT' : 'INTERNAL', message } } };
}

/** Whether an address is this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The Host header values a loopback dashboard answers to. */
export function loopbackHosts(bound: string, port: number): Set<string> {
  const names = new Set([bound.includes(':') ? `[${bound}]` : bound, 'localhost', '127.0.0.1', '[::1]']);
  return new Set([...names].map((n) => `${n}:${port}`));
}

/** Refuses a Host header a loopback dashboard was not reached by (DNS rebinding). */
export function checkHost(req: IncomingMessage, allowed: Set<string> | undefined): void {
  if (allowed && !allowed.has(req.headers.host ?? '')) {
    throw new HttpError(403, 'FORBIDDEN_HOST', `this dashboard answers to ${[...allowed].join(', ')}, not Host ${JSON.stringify(req.headers.host ?? '')}.`);
  }
}

/**
 * A state-changing request must come from the dashboard's own page (or from a client that is not
 * a browser: no Origin and no fetch metadata), and carry JSON (which a cross-site form cannot send).
 */
export function checkPost(req: IncomingMessage): void {
  const origin = req.headers.origin;
  const host = req.headers.host ?? '';
  if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`) {
    throw new HttpError(403, 'FORBIDDEN_ORIGIN', `requests from ${origin} may not change anything here; use the dashboard at http://${host}/.`);
  }
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw new HttpError(403, 'FORBIDDEN_ORIGIN', `a ${site} request may not change anything here; use the dashboard's own page.`);
  }
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as JSON (Content-Type: application/json).');
  }
}

/** The JSON object in a request body (at most 16 KiB). */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 16_384) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', 'the request body is over 16 KiB.');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  const value: unknown = text ? JSON.parse(text) : {};
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new HttpError(400, 'USER_INPUT', 'the request body must be a JSON object.');
  return value as Record<string, unknown>;
}

/** JSON as the dashboard answers it: secrets scrubbed. */
export function jsonText(data: unknown): string {
  return scrub(JSON.stringify(data));
}

/** Answers with JSON (scrubbed, never cached). */
export function sendJson(res: ServerResponse, status: number, data: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, jsonText(data), headers);
}

/** Answers with JSON text made by {@link jsonText}. */
export function sendJsonText(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(body);
}
