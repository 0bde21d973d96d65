/**
 * `GET /api/events`: server-sent events telling pages what changed (ids only; a page re-reads
 * what it shows). `hello` carries the version a page compares after a reconnect; comments every
 * 15 s keep proxies from closing an idle stream.
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LiveInventory } from './live.js';

const HEARTBEAT_MS = 15_000;
/** How soon a browser reconnects after the stream drops. */
const RETRY_MS = 1_000;

/** The open event streams of one dashboard. */
export class EventStreams {
  readonly #live: LiveInventory;
  readonly #open = new Set<ServerResponse>();

  constructor(live: LiveInventory) {
    this.#live = live;
  }

  /** Starts one stream; it ends when the client goes or {@link closeAll} is called. */
  open(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write(`retry: ${RETRY_MS}\n`);
    send(res, 'hello', { version: this.#live.version });
    const unsubscribe = this.#live.subscribe((changes) => {
      const hosts = new Set<string>();
      const deployments = new Set<string>();
      let reset = false;
      for (const c of changes) {
        if (c.kind === 'host') hosts.add(c.id);
        else if (c.kind === 'deployment') deployments.add(c.id);
        else reset = true;
      }
      send(res, 'change', { version: this.#live.version, reset, hosts: [...hosts], deployments: [...deployments] });
    });
    const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS).unref();
    this.#open.add(res);
    const end = (): void => {
      clearInterval(heartbeat);
      unsubscribe();
      this.#open.delete(res);
    };
    req.on('close', end);
    res.on('close', end);
  }

  /** Ends every stream (the dashboard is stopping). */
  closeAll(): void {
    for (const res of this.#open) res.end();
    this.#open.clear();
  }
}

function send(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
