/**
 * The SSH transport: a small pool of ssh2 connections to one host. It connects lazily, retries
 * until SSH answers (bounded, with backoff, so a booting VM can be waited for), turns Nagle off,
 * sends keepalives, opens more connections when channels run short (OpenSSH allows 10 per
 * connection and frees them late), and reconnects after a drop. An idle connection never keeps
 * the process alive: its socket is unref'd while no channel is open, its keepalive timer always.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { homedir, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Client, ClientChannel, ConnectConfig, ServerHostKeyAlgorithm } from 'ssh2';
import { HostConnectionError, TimeoutError, UserInputError, importOptional, messageOf } from '../lib/errors.js';
import { fingerprint, lineFingerprint, publicKeyLine } from '../lib/known-hosts.js';
import type { SshConnection } from '../lib/records.js';
import type { RemoteProcess, RemoteSignal, SpawnOptions, Transport } from './session.js';

/** Tuning and credentials for {@link SshTransport}. */
export interface SshTransportOptions {
  connection: SshConnection;
  /** Limit for one connection attempt, ms. */
  connectTimeout?: number;
  /** Keep retrying until SSH answers for this long, ms (0: one attempt). */
  readyTimeout?: number;
  keepaliveInterval?: number;
  keepaliveCountMax?: number;
  channelsPerConnection?: number;
  maxConnections?: number;
  /**
   * Streams a big file transfer is split into, each on a connection of its own. `auto` (the
   * default): one stream when the host is this machine (a loopback address or one of its own),
   * else 4.
   */
  bulkStreams?: number | 'auto';
  /** Key file used when the connection names none. */
  defaultPrivateKeyPath?: string;
  /** Password env var used when the connection names none. */
  defaultPasswordEnv?: string;
  /**
   * `record`: check against `connection.hostPublicKey` (else `hostKey`, the fingerprint) and
   * report a key not pinned yet; `ignore`: never check.
   */
  hostKeyPolicy?: 'record' | 'ignore';
  /**
   * Called with the SHA256 fingerprint and the key line (`ssh-ed25519 AAAA...`) when a key is
   * seen that the connection does not pin in full yet (to record it).
   */
  onHostKey?: (fingerprint: string, publicKey: string) => void | Promise<void>;
  /** Label for messages. */
  label?: string;
}

interface PooledConnection {
  client: Client;
  /** Unref'd while no channel is open, so an idle connection never keeps the process alive. */
  socket: Socket;
  active: number;
  /** Bulk transfer channels on this connection: parallel transfers go to different connections. */
  bulk: number;
  closed: boolean;
  /** Processes whose exit is pending on this connection: rejected if it drops. */
  pending: Set<(error: Error) => void>;
}

type SshModule = typeof import('ssh2');
let ssh2Module: Promise<SshModule> | undefined;
function loadSsh2(): Promise<SshModule> {
  ssh2Module ??= importOptional('ssh2', 'SSH sessions', () => import('ssh2'));
  return ssh2Module;
}

export { fingerprint };

/** SSH to one host. */
export class SshTransport implements Transport {
  readonly label: string;
  private readonly options: Required<Omit<SshTransportOptions, 'defaultPrivateKeyPath' | 'defaultPasswordEnv' | 'onHostKey' | 'label'>> &
    Pick<SshTransportOptions, 'defaultPrivateKeyPath' | 'defaultPasswordEnv' | 'onHostKey'>;
  private readonly pool: PooledConnection[] = [];
  private opening = 0;
  private readonly waiters: Array<() => void> = [];
  private knownHostKey: string | undefined;
  /** The whole pinned key (`ssh-ed25519 AAAA...`), when known (else only its fingerprint, or nothing). */
  private knownPublicKey: string | undefined;
  /** A first successful login means later attempts need not wait for a boot. */
  private everConnected = false;
  /** Recording of a first-seen host key, awaited before the connection is used. */
  private hostKeyWrite: Promise<void> | undefined;
  /** The last failed connect, shared with callers queued behind it so a dead host fails fast. */
  private lastFailure: { error: unknown; at: number } | undefined;

  constructor(options: SshTransportOptions) {
    this.options = {
      connectTimeout: 10_000,
      readyTimeout: 0,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 3,
      channelsPerConnection: 5,
      maxConnections: 8,
      bulkStreams: 'auto',
      hostKeyPolicy: 'record',
      ...options,
    };
    this.knownHostKey = options.connection.hostKey;
    this.knownPublicKey = options.connection.hostPublicKey;
    const c = options.connection;
    this.label = options.label ?? `${c.username}@${c.host}:${c.port}`;
  }

  /**
   * How many connections a big file transfer is split over (see Session.write). To another
   * machine one stream is held back by its window (2 MiB per round trip) and the far side's sshd
   * uses one CPU per connection, so several go at once. On this machine both ends share the same
   * CPUs and extra streams only compete for them: on a 2-CPU machine with sshd on loopback,
   * 1 stream beat 4 in every run of bench:ssh.
   */
  get bulkStreams(): number {
    const wanted = this.options.bulkStreams;
    const streams = wanted !== 'auto' ? wanted : isThisMachine(this.options.connection.host) ? 1 : 4;
    return Math.max(1, Math.min(streams, this.options.maxConnections));
  }

  async spawn(command: string, options: SpawnOptions = {}): Promise<RemoteProcess> {
    // sshd makes each command a session leader; the tag lets kill() find that session and end
    // the whole process tree, not just the top shell (a signal alone leaves its children running).
    const tag = `hb-run-${randomBytes(6).toString('hex')}`;
    const tagged = options.pty ? command : `: ${tag}; ${command}`;
    for (let attempt = 0; ; attempt++) {
      const bulk = options.bulk === true;
      const conn = await this.acquire(bulk);
      try {
        // track() must run inside ssh2's callback: the exit status can arrive in the same chunk.
        return await openChannel(conn.client, tagged, options, (channel) => this.track(conn, channel, command, options.pty ? undefined : tag, bulk));
      } catch (error) {
        this.releaseSlot(conn, bulk);
        // sshd frees channel slots late: a refused channel is retried on another connection.
        if (/open failure|Channel open/i.test(messageOf(error)) && attempt < 20 && !conn.closed) {
          await sleep(10 + attempt * 10);
          continue;
        }
        if (conn.closed && attempt < 2) continue;
        throw new HostConnectionError(`cannot start \`${command}\` on ${this.label}: ${messageOf(error)}`, { cause: error });
      }
    }
  }

  /** Signals every process in the session of the tagged command (best effort, needs pgrep/pkill). */
  private async killSession(tag: string, sig: RemoteSignal): Promise<void> {
    // `[h]b-run-...` matches the tagged command but not this killer's own command line.
    const pattern = `[${tag[0]}]${tag.slice(1)}`;
    try {
      const proc = await this.spawn(
        `for p in $(pgrep -f '${pattern}' 2>/dev/null); do pkill -${sig} -s "$p" 2>/dev/null; kill -${sig} "$p" 2>/dev/null; done; true`,
      );
      proc.stdin.end();
      proc.stdout.resume();
      proc.stderr.resume();
      await proc.exit;
    } catch {
      // The connection may be gone; sshd then ends the session itself.
    }
  }

  /** Connects now (waiting for SSH up to `readyTimeout`) without running anything. */
  async ready(): Promise<void> {
    const conn = await this.acquire();
    this.releaseSlot(conn);
  }

  async close(): Promise<void> {
    const all = this.pool.splice(0);
    for (const c of all) {
      c.closed = true;
      c.client.end();
    }
    for (const wake of this.waiters.splice(0)) wake();
  }

  private track(conn: PooledConnection, channel: ClientChannel, command: string, tag: string | undefined, bulk: boolean): RemoteProcess {
    widenWindowForBulk(channel);
    let status: number | null = null;
    let signal: string | undefined;
    let fail: (error: Error) => void = () => undefined;
    const exit = new Promise<{ status: number | null; signal?: string }>((resolve, reject) => {
      fail = (error) => reject(new HostConnectionError(`the connection to ${this.label} dropped while \`${command}\` ran: ${error.message}`, { cause: error }));
      conn.pending.add(fail);
      channel.on('exit', (code: number | null, signalName?: string) => {
        status = code;
        if (signalName) signal = signalName;
      });
      channel.on('close', () => {
        conn.pending.delete(fail);
        this.releaseSlot(conn, bulk);
        resolve(signal ? { status, signal } : { status });
      });
    });
    exit.catch(() => undefined);
    return {
      stdin: channel,
      stdout: channel,
      stderr: channel.stderr,
      exit,
      kill: (sig: RemoteSignal = 'KILL') => {
        try {
          channel.signal(sig);
        } catch {
          // Older servers refuse signals; closing the channel still ends the wait.
        }
        if (tag) void this.killSession(tag, sig);
        channel.close();
      },
      resize: (rows, cols) => channel.setWindow(rows, cols, 0, 0),
    };
  }

  private async acquire(bulk = false): Promise<PooledConnection> {
    for (;;) {
      const usable = (c: PooledConnection) => !c.closed && c.active < this.options.channelsPerConnection;
      const canOpen = (this.pool.length > 0 || this.opening === 0) && this.pool.length + this.opening < this.options.maxConnections;
      // A bulk channel prefers a connection without one; it opens a new connection for that if it may.
      const free = (bulk ? this.pool.find((c) => usable(c) && c.bulk === 0) : undefined) ?? (bulk && canOpen ? undefined : this.pool.find(usable));
      if (free) {
        take(free, bulk);
        return free;
      }
      if (this.pool.length === 0 && this.opening === 0 && this.lastFailure && Date.now() - this.lastFailure.at < 1000) {
        throw this.lastFailure.error;
      }
      // The first connection opens alone (it may have to wait for a boot); then up to the limit.
      if (canOpen) {
        this.opening++;
        try {
          const conn = await this.open();
          this.lastFailure = undefined;
          this.pool.push(conn);
          take(conn, bulk);
          return conn;
        } catch (error) {
          this.lastFailure = { error, at: Date.now() };
          throw error;
        } finally {
          this.opening--;
          this.wake();
        }
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private releaseSlot(conn: PooledConnection, bulk = false): void {
    conn.active = Math.max(0, conn.active - 1);
    if (bulk) conn.bulk = Math.max(0, conn.bulk - 1);
    if (conn.active === 0) conn.socket.unref();
    this.wake();
  }

  private wake(): void {
    this.waiters.shift()?.();
  }

  private async open(): Promise<PooledConnection> {
    const { Client } = await loadSsh2();
    const deadline = Date.now() + (this.everConnected ? 0 : this.options.readyTimeout);
    let delay = 200;
    let authFailures = 0;
    for (;;) {
      try {
        const { client, socket } = await this.connectOnce(Client);
        await this.hostKeyWrite;
        this.everConnected = true;
        const conn: PooledConnection = { client, socket, active: 0, bulk: 0, closed: false, pending: new Set() };
        let stopKeepalive = (): void => undefined;
        const drop = (error?: Error) => {
          stopKeepalive();
          if (conn.closed && !error) return;
          conn.closed = true;
          const i = this.pool.indexOf(conn);
          if (i >= 0) this.pool.splice(i, 1);
          const why = error ?? new Error('connection closed');
          for (const fail of conn.pending) fail(why);
          conn.pending.clear();
          this.wake();
        };
        client.on('error', (e: Error) => drop(e));
        client.on('close', () => drop());
        stopKeepalive = keepalive(client, socket, this.options.keepaliveInterval, this.options.keepaliveCountMax, () => {
          drop(new Error('Keepalive timeout'));
          socket.destroy();
        });
        return conn;
      } catch (error) {
        const msg = messageOf(error);
        if (error instanceof UserInputError || /host key/i.test(msg)) throw error;
        if (/authentication/i.test(msg) && ++authFailures >= 3) {
          throw new HostConnectionError(`${this.label} refused the login: ${msg}. Check the username and key/password for this host.`, { cause: error });
        }
        if (Date.now() + delay > deadline) {
          const waited = this.options.readyTimeout && !this.everConnected ? ` (kept trying for ${Math.round(this.options.readyTimeout / 1000)} s)` : '';
          throw new HostConnectionError(`cannot connect to ${this.label}${waited}: ${msg}. Check that the host is up and SSH listens there.`, { cause: error });
        }
        await sleep(delay);
        delay = Math.min(delay * 1.6, 3000);
      }
    }
  }

  private connectOnce(ClientClass: SshModule['Client']): Promise<{ client: Client; socket: Socket }> {
    const c = this.options.connection;
    return new Promise((resolve, reject) => {
      const socket: Socket = netConnect({ host: c.host, port: c.port });
      socket.setNoDelay(true);
      const client = new ClientClass();
      let hostKeyError: Error | undefined;
      const timer = setTimeout(() => {
        socket.destroy();
        client.end();
        reject(new TimeoutError(`no SSH answer from ${this.label} within ${this.options.connectTimeout} ms`, this.options.connectTimeout));
      }, this.options.connectTimeout);
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(hostKeyError ?? error);
      };
      // `on`, not `once`: before the handshake ssh2 may emit a second error (e.g. "Connection lost
      // before handshake" after a reset), which would otherwise be an uncaught 'error' event.
      socket.on('error', fail);
      client.on('error', fail);
      client.once('ready', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        client.off('error', fail);
        resolve({ client, socket });
      });
      // Negotiate the pinned key's type: a host with several keys must show the pinned one.
      const pinnedAlgorithms = this.options.hostKeyPolicy === 'ignore' ? undefined : hostKeyAlgorithms(this.knownPublicKey);
      const config: ConnectConfig = {
        sock: socket,
        username: c.username,
        // ssh2's keepalive timer cannot be unref'd: keepalive() below replaces it.
        keepaliveInterval: 0,
        readyTimeout: this.options.connectTimeout,
        hostVerifier: (key: Buffer) => {
          if (this.options.hostKeyPolicy === 'ignore') return true;
          const seen = fingerprint(key);
          // Both pins must hold: the fingerprint and the whole key (a record may carry either or both).
          const pinned = [this.knownHostKey, this.knownPublicKey && lineFingerprint(this.knownPublicKey)].find((p) => p && p !== seen);
          if (pinned) {
            hostKeyError = new HostConnectionError(
              `the host key of ${this.label} changed: hostbroker pinned ${pinned}, the host now presents ${seen}, so the connection was refused. ` +
                'If the host was rebuilt on purpose, check it in and out again (or set ssh.hostKeyPolicy: ignore); otherwise someone may be intercepting the connection.',
            );
            return false;
          }
          if (!this.knownPublicKey) {
            this.knownHostKey = seen;
            this.knownPublicKey = publicKeyLine(key);
            this.hostKeyWrite = Promise.resolve(this.options.onHostKey?.(seen, this.knownPublicKey)).catch(() => undefined);
          }
          return true;
        },
        ...(pinnedAlgorithms ? { algorithms: { serverHostKey: pinnedAlgorithms } } : {}),
        ...this.credentials(),
      };
      try {
        client.connect(config);
      } catch (error) {
        fail(error as Error);
      }
    });
  }

  private credentials(): Partial<ConnectConfig> {
    const c = this.options.connection;
    const keyPath = c.privateKeyPath ?? (c.passwordEnv ? undefined : this.options.defaultPrivateKeyPath);
    const passwordEnv = c.passwordEnv ?? this.options.defaultPasswordEnv;
    const out: Partial<ConnectConfig> = {};
    if (keyPath) {
      try {
        out.privateKey = readFileSync(keyPath);
      } catch (error) {
        throw new UserInputError(`cannot read the private key ${keyPath} for ${this.label}: ${messageOf(error)}.`, { cause: error });
      }
    }
    if (passwordEnv) {
      const password = process.env[passwordEnv];
      if (password === undefined)
        throw new UserInputError(`the password for ${this.label} should be in the environment variable ${passwordEnv}, which is not set.`);
      out.password = password;
    }
    if (!out.privateKey && !out.password) {
      if (process.env.SSH_AUTH_SOCK) out.agent = process.env.SSH_AUTH_SOCK;
      for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
        try {
          out.privateKey = readFileSync(join(homedir(), '.ssh', name));
          break;
        } catch {
          // try the next default key
        }
      }
    }
    return out;
  }
}

/** A connection's socket counts as work (ref'd) from the moment a channel slot is taken. */
function take(conn: PooledConnection, bulk: boolean): void {
  conn.active++;
  if (bulk) conn.bulk++;
  conn.socket.ref();
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
function keepalive(client: Client, socket: Socket, intervalMs: number, countMax: number, onDead: () => void): () => void {
  const c = client as unknown as ClientInternals;
  if (!(intervalMs > 0)) return () => undefined;
  if (typeof c._protocol?.ping !== 'function' || !Array.isArray(c._callbacks)) {
    socket.setKeepAlive(true, intervalMs);
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

function openChannel<T>(client: Client, command: string, options: SpawnOptions, onOpen: (channel: ClientChannel) => T): Promise<T> {
  return new Promise((resolve, reject) => {
    const pty = options.pty ? { term: 'xterm-256color', rows: 24, cols: 80, ...(options.pty === true ? {} : options.pty) } : undefined;
    const cb = (err: Error | undefined, channel: ClientChannel) => (err ? reject(err) : resolve(onOpen(channel)));
    try {
      if (pty) client.exec(command, { pty }, cb);
      else client.exec(command, cb);
    } catch (error) {
      reject(error as Error);
    }
  });
}

/** The host key algorithms ssh2 can use with a key of this line's type (an RSA key signs with three). */
function hostKeyAlgorithms(line: string | undefined): ServerHostKeyAlgorithm[] | undefined {
  const type = line?.split(' ')[0];
  if (type === 'ssh-rsa') return ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
  return type && /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-dss)$/.test(type) ? [type as ServerHostKeyAlgorithm] : undefined;
}

/** Whether `host` names this machine: `localhost`, a loopback address, or one of its interfaces' addresses. */
export function isThisMachine(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || /^127\./.test(h) || /^::ffff:127\./.test(h)) return true;
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address.toLowerCase() === h));
}

/** Receive window for a channel that turned out to carry bulk output (downloads, `cat` of big files). */
const BULK_WINDOW = 8 << 20;
/** Output after which a channel counts as bulk: small commands keep ssh2's 2 MiB window. */
const BULK_AFTER = 1 << 20;

/** The ssh2 channel internals that flow control uses (not in ssh2's types). */
interface ChannelInternals {
  push(chunk: unknown, encoding?: BufferEncoding): boolean;
  incoming?: { window: number };
  outgoing?: { id: number; state: string };
  _client?: { _protocol?: { channelWindowAdjust?(id: number, amount: number): void } };
}

/**
 * ssh2 keeps every channel's receive window at 2 MiB and tops it up only when half is used: on a
 * busy machine the sender then stalls between top-ups, and downloads run at half scp's speed.
 * Once a channel has delivered {@link BULK_AFTER} bytes this grants the server up to
 * {@link BULK_WINDOW}, but only while the reader keeps up (push accepted), so a stalled reader
 * still stops the sender. Skipped if ssh2's internals ever change shape.
 */
function widenWindowForBulk(channel: ClientChannel): void {
  const ch = channel as unknown as ChannelInternals;
  const protocol = ch._client?._protocol;
  if (!ch.incoming || !ch.outgoing || typeof protocol?.channelWindowAdjust !== 'function' || typeof ch.push !== 'function') return;
  const incoming = ch.incoming;
  const outgoing = ch.outgoing;
  const push = ch.push.bind(ch);
  let received = 0;
  ch.push = (chunk, encoding) => {
    const accepted = push(chunk, encoding);
    if (Buffer.isBuffer(chunk)) received += chunk.length;
    if (accepted && received > BULK_AFTER && outgoing.state === 'open' && incoming.window < BULK_WINDOW / 2) {
      const amount = BULK_WINDOW - incoming.window;
      incoming.window += amount;
      protocol.channelWindowAdjust!(outgoing.id, amount);
    }
    return accepted;
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
