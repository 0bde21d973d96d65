/**
 * The SSH transport: a small pool of ssh2 connections to one host. It connects lazily, retries
 * until SSH answers (bounded, with backoff, so a booting VM can be waited for), turns Nagle off,
 * sends keepalives, opens more connections when channels run short (OpenSSH allows 10 per
 * connection and frees them late), and reconnects after a drop. An idle connection never keeps
 * the process alive: its socket is unref'd while no channel is open, its keepalive timer always.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import type { Client, ClientChannel, ConnectConfig, ServerHostKeyAlgorithm } from 'ssh2';
import { HostConnectionError, UserInputError, importOptional, messageOf } from '../lib/errors.js';
import { fingerprint, publicKeyLine } from '../lib/known-hosts.js';
import type { SshConnection } from '../lib/records.js';
import type { RemoteProcess, RemoteSignal, SpawnOptions, Transport } from './session.js';
import type { SeenKey } from './ssh-jump.js';
import type { Link } from './ssh-link.js';

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
  /** Passphrase env var for encrypted keys, used when the connection names none. */
  defaultPassphraseEnv?: string;
  /** Log in with the ssh-agent (settings `ssh.agent`), when the connection does not say. */
  defaultAgent?: boolean;
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
  /** Like `onHostKey`, for jump host `index` of `connection.jump` whose key is not pinned yet. */
  onJumpHostKey?: (index: number, fingerprint: string, publicKey: string) => void | Promise<void>;
  /** Label for messages. */
  label?: string;
}

interface PooledConnection {
  client: Client;
  /** Unref'd while no channel is open, so an idle connection never keeps the process alive. */
  link: Link;
  active: number;
  /** Bulk transfer channels on this connection: parallel transfers go to different connections. */
  bulk: number;
  closed: boolean;
  /** Processes whose exit is pending on this connection: rejected if it drops. */
  pending: Set<(error: Error) => void>;
}

type OptionalKeys = 'defaultPrivateKeyPath' | 'defaultPasswordEnv' | 'defaultPassphraseEnv' | 'defaultAgent' | 'onHostKey' | 'onJumpHostKey';

type SshModule = typeof import('ssh2');
let ssh2Module: Promise<SshModule> | undefined;
// The connection code loads with ssh2, on the first connect: set before any connection exists.
let auth: typeof import('./ssh-auth.js');
let jump: typeof import('./ssh-jump.js');
let links: typeof import('./ssh-link.js');
function loadSsh2(): Promise<SshModule> {
  // ssh2 is CommonJS: ESM sees `utils` only on its default export.
  ssh2Module ??= Promise.all([
    importOptional('ssh2', 'SSH sessions', () => import('ssh2')),
    import('./ssh-auth.js'),
    import('./ssh-jump.js'),
    import('./ssh-link.js'),
  ]).then(([m, authModule, jumpModule, linkModule]) => {
    [auth, jump, links] = [authModule, jumpModule, linkModule];
    return { ...m, utils: m.utils ?? (m as { default: SshModule }).default.utils };
  });
  return ssh2Module;
}

export { fingerprint };

/** SSH to one host. */
export class SshTransport implements Transport {
  readonly label: string;
  private readonly options: Required<Omit<SshTransportOptions, OptionalKeys | 'label'>> & Pick<SshTransportOptions, OptionalKeys>;
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
  /** Jump hosts whose first-seen key was reported (once per transport, not per connection). */
  private readonly jumpKeysReported = new Set<number>();
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
      fail = (error) =>
        reject(
          new HostConnectionError(`the connection to ${this.label} dropped while \`${command}\` ran: ${error.message}`, { cause: error, reason: 'dropped' }),
        );
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
    if (conn.active === 0) conn.link.unref();
    this.wake();
  }

  private wake(): void {
    this.waiters.shift()?.();
  }

  private async open(): Promise<PooledConnection> {
    const ssh2 = await loadSsh2();
    const deadline = Date.now() + (this.everConnected ? 0 : this.options.readyTimeout);
    let delay = 200;
    let authFailures = 0;
    for (;;) {
      try {
        const { client, link } = await this.connectOnce(ssh2);
        await this.hostKeyWrite;
        this.everConnected = true;
        const conn: PooledConnection = { client, link, active: 0, bulk: 0, closed: false, pending: new Set() };
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
        link.unref();
        stopKeepalive = links.keepalive(client, link, this.options.keepaliveInterval, this.options.keepaliveCountMax, () => {
          drop(new Error('Keepalive timeout'));
          link.destroy();
        });
        return conn;
      } catch (error) {
        const msg = messageOf(error);
        const reason = error instanceof HostConnectionError ? error.reason : undefined;
        if (error instanceof UserInputError || reason === 'passphrase' || reason === 'host-key' || /host key/i.test(msg)) throw error;
        // A booting host may refuse logins until its keys are in place: a refusal counts only thrice.
        if (reason === 'auth' && ++authFailures >= 3) throw error;
        if (Date.now() + delay > deadline) {
          if (reason === 'auth') throw error;
          const waited = this.options.readyTimeout && !this.everConnected ? ` (kept trying for ${Math.round(this.options.readyTimeout / 1000)} s)` : '';
          const via = error instanceof HostConnectionError ? error.via : undefined;
          throw new HostConnectionError(
            `cannot connect to ${this.label}${waited}: ${msg}. Check that the host${via ? ` and its jump hosts are` : ' is'} up and SSH listens there.`,
            {
              cause: error,
              reason: 'unreachable',
              ...(via ? { via } : {}),
            },
          );
        }
        await sleep(delay);
        delay = Math.min(delay * 1.6, 3000);
      }
    }
  }

  /** The TCP socket to the host, or a channel through its jump hosts (their keys checked). */
  private async linkTo(ssh2: SshModule): Promise<Link> {
    const c = this.options.connection;
    if (!c.jump?.length) return links.tcpLink(c.host, c.port);
    const { link, seen } = await jump.jumpLink(ssh2, c.jump, c, {
      connectTimeout: this.options.connectTimeout,
      keepaliveInterval: this.options.keepaliveInterval,
      keepaliveCountMax: this.options.keepaliveCountMax,
      hostKeyPolicy: this.options.hostKeyPolicy,
      auth: this.authDefaults(),
    });
    try {
      await this.checkJumpKeys(seen);
    } catch (error) {
      link.destroy();
      throw error;
    }
    return link;
  }

  /** A shared chain was opened with someone's pins: this connection's own must hold too. */
  private async checkJumpKeys(seen: SeenKey[]): Promise<void> {
    const hops = this.options.connection.jump ?? [];
    for (const [i, hop] of hops.entries()) {
      const key = seen[i];
      if (!key) continue;
      const pin = this.options.hostKeyPolicy === 'ignore' ? undefined : links.brokenPin(hop.hostKey, hop.hostPublicKey, key.fingerprint);
      if (pin) throw jump.hostKeyChanged(`jump host ${jump.hopLabel(hop)} (for ${this.label})`, pin, key.fingerprint, jump.hopLabel(hop));
      if (hop.hostPublicKey || this.jumpKeysReported.has(i)) continue;
      this.jumpKeysReported.add(i);
      await Promise.resolve(this.options.onJumpHostKey?.(i, key.fingerprint, key.publicKey)).catch(() => undefined);
    }
  }

  private authDefaults() {
    return {
      privateKeyPath: this.options.defaultPrivateKeyPath,
      passwordEnv: this.options.defaultPasswordEnv,
      passphraseEnv: this.options.defaultPassphraseEnv,
      agent: this.options.defaultAgent,
    };
  }

  private async connectOnce(ssh2: SshModule): Promise<{ client: Client; link: Link }> {
    const c = this.options.connection;
    // Keys are read (and decrypted) before anything connects: a wrong passphrase fails at once.
    const plan = auth.authPlan(c, this.authDefaults(), this.label, ssh2.utils);
    const link = await this.linkTo(ssh2);
    let hostKeyError: Error | undefined;
    // Negotiate the pinned key's type: a host with several keys must show the pinned one.
    const pinnedAlgorithms = this.options.hostKeyPolicy === 'ignore' ? undefined : hostKeyAlgorithms(this.knownPublicKey);
    const config: ConnectConfig = {
      username: c.username,
      hostVerifier: (key: Buffer) => {
        if (this.options.hostKeyPolicy === 'ignore') return true;
        const seen = fingerprint(key);
        const pinned = links.brokenPin(this.knownHostKey, this.knownPublicKey, seen);
        if (pinned) {
          hostKeyError = jump.hostKeyChanged(this.label, pinned, seen);
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
      ...plan.config,
    };
    try {
      const client = await links.handshake(ssh2.Client, link, config, this.options.connectTimeout, this.label, () => hostKeyError);
      return { client, link };
    } catch (error) {
      if (auth.isAuthFailure(error)) throw auth.authError(plan, this.label, c.username, error);
      throw error;
    }
  }
}

/** A connection's socket counts as work (ref'd) from the moment a channel slot is taken. */
function take(conn: PooledConnection, bulk: boolean): void {
  conn.active++;
  if (bulk) conn.bulk++;
  conn.link.ref();
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
