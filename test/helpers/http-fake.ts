/**
 * Shared pieces of the fake HTTP services the provider tests run against.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Sends a JSON body (none for `undefined`, `''` or 204). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  // statusCode/setHeader/end only: some fakes pass a stand-in that records the answer for later.
  res.statusCode = status;
  if (body === undefined || body === '' || status === 204) return void res.end();
  const text = JSON.stringify(body);
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}

/** Reads a whole request body as text. */
export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}
