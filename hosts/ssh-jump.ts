/**
 * Jump hosts (OpenSSH `ProxyJump a,b`): a chain of SSH connections, each opened through a channel
 * the previous one forwards, and the last forwarding a channel to the host itself. Each jump
 * connection is shared by every connection in this process that goes through it (keyed by who
 * logs in where, so `a` is shared by hosts behind `a` and behind `a,b`), counted by its users,
 * closed a little after the last one leaves, and replaced by a fresh one once it drops (a
 * bastion restart): the next connection opens it again.
 * @module
 */
import type { Socket } from 'node:net';
import type { Client, ClientChannel } from 'ssh2';
import { HostConnectionError, TimeoutError, UserInputError, messageOf } from '../lib/errors.js';
import { fingerprint, publicKeyLine } from '../lib/known-hosts.js';
import type { JumpHost } from '../lib/records.js';
import { type AuthDefaults, authError, authPlan, isAuthFailure } from './ssh-auth.js';
import { brokenPin, handshake, keepalive, type Link, tcpLink } from './ssh-link.js';

type SshModule = typeof import('ssh2');

/** How chains connect (the settings of the first transport that opens one). */
export interface JumpOptions {
  connectTimeout: number;
  keepaliveInterval: number;
  keepaliveCountMax: number;
  hostKeyPolicy: 'record' | 'ignore';
  auth: AuthDefaults;
}

/** A key a jump host showed: what a record pins. */
export interface SeenKey {
  fingerprint: string;
  publicKey: string;
}

/**
 * A connection to the last of `hops`, made through the chain of the hops before it (its
 * `parent`, shared with everyone going only that far) or over TCP for the first.
 */
interface Chain {
  key: string;
  client: Client;
  parent: Chain | undefined;
  /** The first hop's TCP socket: ref'd while any connection through any chain on it has work. */
  socket: Socket;
  /** Links with work on this socket (kept on the first chain). */
  root: { held: number };
  seen: SeenKey[];
  closed: boolean;
  /** Links and child chains alive through this chain. */
  users: number;
  idle: NodeJS.Timeout | undefined;
}

/** A chain is closed this long after its last user left (a reconnect soon after reuses it). */
const IDLE_CLOSE_MS = 2000;

const chains = new Map<string, Promise<Chain>>();

/** `user@host:port` of a jump host, for messages. */
export function hopLabel(hop: JumpHost): string {
  return `${hop.username}@${hop.host}:${hop.port}`;
}

/** The identity of a chain: who logs in where, with what (no secrets, only their references). */
export function chainKey(hops: readonly JumpHost[]): string {
  return hops.map((h) => [hopLabel(h), h.privateKeyPath ?? '', h.passwordEnv ?? '', h.passphraseEnv ?? '', h.agent ? 'agent' : ''].join('|')).join(',');
}

/** How many jump-host connections are open in this process (for tests and diagnostics). */
export function openChains(): number {
  return chains.size;
}

/**
 * A channel to `host:port` through the jump hosts, opening (or sharing) their chain. `seen` are
 * the keys the jump hosts showed, first to last, for the caller to check its pins against.
 */
export async function jumpLink(
  ssh2: SshModule,
  hops: readonly JumpHost[],
  target: { host: string; port: number },
  options: JumpOptions,
): Promise<{ link: Link; seen: SeenKey[] }> {
  for (let attempt = 0; ; attempt++) {
    const chain = await acquireChain(ssh2, hops, options);
    try {
      const channel = await forward(chain.client, target.host, target.port, options.connectTimeout, hopLabel(hops.at(-1)!));
      return { link: chainLink(chain, channel), seen: chain.seen };
    } catch (error) {
      releaseUser(chain);
      // A chain that dropped while it was handed out is replaced once.
      if (chain.closed && attempt === 0) continue;
      throw error;
    }
  }
}

/** Closes every chain (tests; a process that ends closes them anyway). */
export async function closeAllChains(): Promise<void> {
  const all = [...chains.values()];
  chains.clear();
  for (const pending of all) closeChain(await pending.catch(() => undefined));
}

async function acquireChain(ssh2: SshModule, hops: readonly JumpHost[], options: JumpOptions): Promise<Chain> {
  const key = chainKey(hops);
  let pending = chains.get(key);
  if (!pending) {
    pending = openChain(ssh2, key, hops, options);
    chains.set(key, pending);
    pending.catch(() => {
      if (chains.get(key) === pending) chains.delete(key);
    });
  }
  const chain = await pending;
  if (chain.closed) {
    if (chains.get(key) === pending) chains.delete(key);
    return acquireChain(ssh2, hops, options);
  }
  chain.users++;
  if (chain.idle) clearTimeout(chain.idle);
  chain.idle = undefined;
  return chain;
}

async function openChain(ssh2: SshModule, key: string, hops: readonly JumpHost[], options: JumpOptions): Promise<Chain> {
  const hop = hops.at(-1)!;
  const label = `jump host ${hopLabel(hop)}`;
  const parent = hops.length > 1 ? await acquireChain(ssh2, hops.slice(0, -1), options) : undefined;
  let link: Link;
  let tcp: (Link & { socket: Socket }) | undefined;
  try {
    link = parent
      ? bare(await forward(parent.client, hop.host, hop.port, options.connectTimeout, hopLabel(hops.at(-2)!)))
      : (tcp = tcpLink(hop.host, hop.port));
  } catch (error) {
    if (parent) releaseUser(parent);
    throw error;
  }
  const seen: SeenKey[] = [...(parent?.seen ?? [])];
  const index = hops.length - 1;
  let keyError: Error | undefined;
  let client: Client;
  try {
    const plan = authPlan(hop, options.auth, label, ssh2.utils);
    client = await handshake(
      ssh2.Client,
      link,
      {
        username: hop.username,
        ...plan.config,
        hostVerifier: (raw: Buffer) => {
          const seenFp = fingerprint(raw);
          const pin = options.hostKeyPolicy === 'ignore' ? undefined : brokenPin(hop.hostKey, hop.hostPublicKey, seenFp);
          if (pin) {
            keyError = hostKeyChanged(label, pin, seenFp, hopLabel(hop));
            return false;
          }
          seen[index] = { fingerprint: seenFp, publicKey: publicKeyLine(raw) };
          return true;
        },
      },
      options.connectTimeout,
      label,
      () => keyError,
    ).catch((error: unknown) => {
      if (isAuthFailure(error)) throw authError(plan, label, hop.username, error, hopLabel(hop));
      if (error instanceof HostConnectionError || error instanceof UserInputError) throw error;
      throw new HostConnectionError(`cannot reach ${label}: ${messageOf(error)}`, { cause: error, reason: 'unreachable', via: hopLabel(hop) });
    });
  } catch (error) {
    link.destroy();
    if (parent) releaseUser(parent);
    throw error;
  }
  const socket = parent ? parent.socket : tcp!.socket;
  const chain: Chain = { key, client, parent, socket, root: parent ? parent.root : { held: 0 }, seen, closed: false, users: 0, idle: undefined };
  if (!parent) socket.unref();
  const stop = keepalive(client, tcp ?? link, options.keepaliveInterval, options.keepaliveCountMax, () => closeChain(chain));
  const drop = () => {
    stop();
    closeChain(chain);
  };
  client.on('close', drop);
  client.on('error', drop);
  return chain;
}

function closeChain(chain: Chain | undefined): void {
  if (!chain || chain.closed) return;
  chain.closed = true;
  if (chain.idle) clearTimeout(chain.idle);
  chain.client.end();
  if (chain.parent) releaseUser(chain.parent);
  else chain.socket.destroy();
}

function releaseUser(chain: Chain): void {
  chain.users = Math.max(0, chain.users - 1);
  if (chain.users > 0 || chain.closed) return;
  chain.idle = setTimeout(() => {
    if (chain.users > 0) return;
    closeChain(chain);
    void chains.get(chain.key)?.then((c) => c === chain && chains.delete(chain.key));
  }, IDLE_CLOSE_MS);
  chain.idle.unref();
}

/** A channel through the chain as a {@link Link}: holding work refs the chain's one TCP socket. */
function chainLink(chain: Chain, channel: ClientChannel): Link {
  let held = false;
  let released = false;
  const unref = () => {
    if (!held) return;
    held = false;
    if (--chain.root.held === 0) chain.socket.unref();
  };
  channel.once('close', () => {
    unref();
    if (!released) releaseUser(chain);
    released = true;
  });
  return {
    stream: channel,
    ref: () => {
      if (held || chain.closed) return;
      held = true;
      chain.root.held++;
      chain.socket.ref();
    },
    unref,
    destroy: () => channel.destroy(),
    tcpKeepAlive: () => undefined,
  };
}

/** A forwarded channel that only carries the next hop's handshake (the chain keeps the refs). */
function bare(channel: ClientChannel): Link {
  return { stream: channel, ref: () => undefined, unref: () => undefined, destroy: () => channel.destroy(), tcpKeepAlive: () => undefined };
}

/** A `direct-tcpip` channel from `client` to `host:port`, within `timeoutMs`. */
function forward(client: Client, host: string, port: number, timeoutMs: number, via: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new TimeoutError(`jump host ${via} did not open a channel to ${host}:${port} within ${timeoutMs} ms`, timeoutMs)),
      timeoutMs,
    );
    try {
      client.forwardOut('127.0.0.1', 0, host, port, (error, channel) => {
        clearTimeout(timer);
        if (error)
          reject(
            new HostConnectionError(
              `jump host ${via} cannot reach ${host}:${port}: ${error.message}. Check that the host is up and that ${via} may connect to it.`,
              {
                cause: error,
                reason: 'unreachable',
                via,
              },
            ),
          );
        else resolve(channel);
      });
    } catch (error) {
      clearTimeout(timer);
      reject(new HostConnectionError(`jump host ${via} dropped: ${messageOf(error)}`, { cause: error, reason: 'dropped', via }));
    }
  });
}

/** The error for a host (or jump host) whose key is not the pinned one. */
export function hostKeyChanged(label: string, pinned: string, seen: string, via?: string): HostConnectionError {
  return new HostConnectionError(
    `the host key of ${label} changed: hostbroker pinned ${pinned}, the host now presents ${seen}, so the connection was refused. ` +
      'If the host was rebuilt on purpose, check it in and out again (or set ssh.hostKeyPolicy: ignore); otherwise someone may be intercepting the connection.',
    { reason: 'host-key', ...(via ? { via } : {}) },
  );
}
