/**
 * The pieces every SSH connection hostbroker opens shares, whether straight over TCP or through
 * jump hosts: the byte stream it runs on (a {@link Link}), the handshake with a deadline, the
 * host-key pin check, and OpenSSH-style keepalives on an unref'd timer.
 * @module
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client, ConnectConfig } from 'ssh2';
import { TimeoutError } from '../lib/errors.js';
import { lineFingerprint } from '../lib/known-hosts.js';

/**
 * What an SSH connection runs on: a TCP socket, or a channel forwarded by a jump host. `ref` and
 * `unref` say whether the connection has work (an idle one never keeps the process alive).
 */
export interface Link {
  stream: Duplex;
  ref(): void;
  unref(): void;
  destroy(): void;
  /** TCP keepalive, where there is a TCP socket of this connection's own. */
  tcpKeepAlive(ms: number): void;
}

/** A TCP connection with Nagle off. */
export function tcpLink(host: string, port: number): Link & { socket: Socket } {
  const socket = netConnect({ host, port });
  socket.setNoDelay(true);
  return {
    socket,
    stream: socket,
    ref: () => socket.ref(),
    unref: () => socket.unref(),
    destroy: () => socket.destroy(),
    tcpKeepAlive: (ms) => socket.setKeepAlive(true, ms),
  };
}

/**
 * Runs the SSH handshake and login on `link` within `timeoutMs`. Rejects with `hostKeyError()`
 * when the host verifier refused the key (ssh2's own error then says less).
 */
export function handshake(
  ClientClass: typeof Client,
  link: Link,
  config: ConnectConfig,
  timeoutMs: number,
  label: string,
  hostKeyError: () => Error | undefined,
): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new ClientClass();
    const timer = setTimeout(() => {
      link.destroy();
      client.end();
      reject(new TimeoutError(`no SSH answer from ${label} within ${timeoutMs} ms`, timeoutMs));
    }, timeoutMs);
    const fail = (error: Error) => {
      clearTimeout(timer);
      link.destroy();
      reject(hostKeyError() ?? error);
    };
    // `on`, not `once`: before the handshake ssh2 may emit a second error (e.g. "Connection lost
    // before handshake" after a reset), which would otherwise be an uncaught 'error' event.
    link.stream.on('error', fail);
    client.on('error', fail);
    client.once('ready', () => {
      clearTimeout(timer);
      link.stream.off('error', fail);
      client.off('error', fail);
      resolve(client);
    });
    try {
      // ssh2's keepalive timer cannot be unref'd: keepalive() replaces it.
      client.connect({ ...config, sock: link.stream, keepaliveInterval: 0, readyTimeout: timeoutMs });
    } catch (error) {
      fail(error as Error);
    }
  });
}

/** The pin a seen key (fingerprint) breaks: both the fingerprint and the whole key must hold. */
export function brokenPin(hostKey: string | undefined, hostPublicKey: string | undefined, seen: string): string | undefined {
  return [hostKey, hostPublicKey && lineFingerprint(hostPublicKey)].find((p) => p && p !== seen);
}

/** The ssh2 client internals keepalive() uses (not in ssh2's types). */
interface ClientInternals {
  _protocol?: { ping?(): void };
  _callbacks?: Array<() => void>;
}

/**
 * OpenSSH-style keepalive (a `keepalive@openssh.com` request every `intervalMs`; `countMax`
 * unanswered in a row end the connection) on an unref'd timer: ssh2's own timer is re-created on
 * every reply and would keep an idle process alive. Replies are matched in order through ssh2's
 * global-request callback queue, as ssh2 itself does. Stops when called; skipped (TCP keepalive
 * only) if ssh2's internals ever change shape.
 */
export function keepalive(client: Client, link: Link, intervalMs: number, countMax: number, onDead: () => void): () => void {
  const c = client as unknown as ClientInternals;
  if (!(intervalMs > 0)) return () => undefined;
  if (typeof c._protocol?.ping !== 'function' || !Array.isArray(c._callbacks)) {
    link.tcpKeepAlive(intervalMs);
    return () => undefined;
  }
  let unanswered = 0;
  const timer = setInterval(() => {
    if (++unanswered > countMax) {
      clearInterval(timer);
      onDead();
      return;
    }
    try {
      c._callbacks!.push(() => (unanswered = 0));
      c._protocol!.ping!();
    } catch {
      // The connection is closing: its 'close' stops this timer.
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
