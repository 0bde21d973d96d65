/** What the dashboard tests share: a broker directory, records written straight to its store, HTTP calls. */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker/index.js';
import { coreOf } from '../../lib/broker/core.js';
import { createLogger } from '../../lib/logger.js';
import { HostRecord, type HostRecordInput } from '../../lib/records.js';

export const quiet = createLogger('silent');

/** A Broker over a fresh directory (or the given one). */
export async function newBroker(directory?: string): Promise<Broker> {
  return new Broker({ directory: directory ?? (await mkdtemp(join(tmpdir(), 'hb-dash-'))), logger: quiet });
}

/**
 * Records no provider made (a `static`-like host that needs no release call is not what these
 * are: they are only ever forgotten), for names no provider would accept and for volume.
 */
export function fakeRecord(name: string, extra: Partial<HostRecordInput> = {}): HostRecord {
  const id = `hb-${randomBytes(6).toString('hex')}`;
  return HostRecord.parse({
    id,
    name,
    hostname: '192.0.2.10',
    provider: 'static',
    instance: 'default',
    state: 'ready',
    recipe: { provider: 'static', args: {} },
    owner: 'someone',
    brokerId: 'test',
    createdAt: new Date().toISOString(),
    ...extra,
  });
}

/** Writes records into a Broker's store, as another process would. */
export async function addRecords(broker: Broker, records: HostRecord[]): Promise<void> {
  await coreOf(broker).store.add(records);
}

/** One HTTP request with exactly these headers (fetch would add or refuse some, e.g. Host). */
export function call(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A JSON POST as the dashboard's own page sends it. */
export function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const origin = base.replace(/\/$/, '');
  return call(`${origin}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', origin, ...headers }, body: JSON.stringify(body) });
}

/** Retries `check` until it stops throwing (the dashboard sees a store change a moment after it is written). */
export async function eventually<T>(check: () => Promise<T>, limitMs = 15_000): Promise<T> {
  const end = Date.now() + limitMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > end) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
