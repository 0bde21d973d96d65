/**
 * QEMU user-mode networking for the libvirt provider: free host ports for the forwards, and the
 * wait for the guest's SSH banner through the SSH forward (QEMU accepts a forwarded connection
 * before the guest listens, so an open port says nothing; the banner does).
 * @module
 */
import { connect, createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PortMap } from '../../lib/records.js';
import type { Forward } from './xml.js';

/** Ports handed out lately in this process, so concurrent checkouts never pick the same one. */
const recent = new Map<number, number>();
const RECENT_MS = 120_000;

/** Forwards from free ports on `host` to each guest port (22 first, duplicates dropped). */
export async function freeForwards(host: string, guestPorts: readonly number[]): Promise<Forward[]> {
  const guests = [...new Set([22, ...guestPorts])];
  const now = Date.now();
  for (const [port, at] of recent) if (now - at > RECENT_MS) recent.delete(port);
  // All listening at once: the kernel gives distinct ports; they are closed for QEMU to bind.
  const servers: Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < guests.length) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, () => resolve());
      });
      const { port } = server.address() as { port: number };
      if (!recent.has(port)) ports.push(port);
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
  for (const port of ports) recent.set(port, now);
  return guests.map((guest, i) => ({ guest, host, port: ports[i]! }));
}

/** The record's port map: guest port → where this host reaches it. */
export function portMapOf(forwards: readonly Forward[]): PortMap {
  return Object.fromEntries(forwards.map((f) => [String(f.guest), { host: f.host, port: f.port }]));
}

/** Whether `host:port` answers with an SSH banner within `timeoutMs`. */
export function sshBanner(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let seen = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      if (seen.length >= 4) done(seen.startsWith('SSH-'));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

/** Options of {@link waitForSshBanner}. */
export interface BannerWait {
  host: string;
  port: number;
  timeoutMs: number;
  intervalMs: number;
  signal: AbortSignal;
  /** Whether the domain still runs (a guest that stopped will never answer). */
  running: () => Promise<boolean>;
}

/** Waits for the SSH banner; 'stopped' when the domain stopped first, 'timeout' when time ran out. */
export async function waitForSshBanner(w: BannerWait): Promise<'ready' | 'stopped' | 'timeout'> {
  const deadline = Date.now() + w.timeoutMs;
  for (;;) {
    w.signal.throwIfAborted();
    // A guest that is up but slow (software emulation) may take seconds to send its banner.
    if (await sshBanner(w.host, w.port, Math.min(10_000, Math.max(1000, deadline - Date.now())))) return 'ready';
    if (!(await w.running())) return 'stopped';
    if (Date.now() + w.intervalMs > deadline) return 'timeout';
    await sleep(w.intervalMs, undefined, { signal: w.signal });
  }
}
