/**
 * The SSH path of container hosts: a key pair made per host (kept as a file under the broker
 * directory; the record holds only its path), and a wait until a login with it works.
 * @module
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { HostConnectionError, TimeoutError, importOptional, messageOf } from '../../lib/errors.js';

type Ssh2 = typeof import('ssh2');
/** ssh2 is CommonJS: Node's ESM import exposes only some names directly, all on `default`. */
async function loadSsh2(): Promise<Ssh2> {
  const mod = await importOptional('ssh2', 'SSH to containers', () => import('ssh2'));
  return ((mod as { default?: Ssh2 }).default ?? mod) as Ssh2;
}

/** Where the private key of a container host lives. */
export function keyPathFor(directory: string, recordId: string): string {
  return join(directory, 'keys', 'container', `${recordId}.key`);
}

/** Makes an ed25519 key pair for a host; writes the private key (0600) and returns the public line. */
export async function createHostKey(directory: string, recordId: string): Promise<{ privateKeyPath: string; publicKey: string }> {
  const { utils } = await loadSsh2();
  const pair = utils.generateKeyPairSync('ed25519', { comment: `hostbroker ${recordId}` });
  const privateKeyPath = keyPathFor(directory, recordId);
  await mkdir(join(directory, 'keys', 'container'), { recursive: true, mode: 0o700 });
  await writeFile(privateKeyPath, pair.private, { mode: 0o600 });
  return { privateKeyPath, publicKey: pair.public.trim() };
}

/** Deletes a host's key file (missing is fine). */
export async function removeHostKey(directory: string, recordId: string): Promise<void> {
  await rm(keyPathFor(directory, recordId), { force: true });
}

/** Options for {@link waitForLogin}. */
export interface WaitForLoginOptions {
  host: string;
  port: number;
  username: string;
  privateKey: Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Says why waiting is pointless (e.g. the container exited), or undefined while it may still work. */
  check?: () => Promise<string | undefined>;
  label: string;
}

/** Retries an SSH login until it succeeds, the host is dead, or time runs out. */
export async function waitForLogin(options: WaitForLoginOptions): Promise<void> {
  const { Client } = await loadSsh2();
  const deadline = Date.now() + options.timeoutMs;
  let last = 'no attempt yet';
  let attempt = 0;
  for (;;) {
    if (options.signal?.aborted) throw new TimeoutError(`waiting for SSH on ${options.label} was aborted`, options.timeoutMs, { cause: options.signal.reason });
    try {
      await loginOnce(Client, options, Math.max(1000, Math.min(5000, deadline - Date.now())));
      return;
    } catch (error) {
      last = messageOf(error);
    }
    // Checking the container costs a request: do it every few attempts, not each time.
    if (options.check && attempt++ % 5 === 4) {
      const dead = await options.check();
      if (dead) throw new HostConnectionError(`${options.label} will not answer SSH: ${dead}`);
    }
    if (Date.now() > deadline) {
      const dead = await options.check?.();
      throw new TimeoutError(
        `${options.label} did not accept an SSH login within ${Math.round(options.timeoutMs / 1000)} s (last: ${last})${dead ? `; ${dead}` : ''}. ` +
          'Check that the image runs sshd and lets the user log in with a key, or raise ssh.readyTimeout.',
        options.timeoutMs,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function loginOnce(ClientClass: typeof import('ssh2').Client, options: WaitForLoginOptions, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: options.host, port: options.port });
    socket.setNoDelay(true);
    const client = new ClientClass();
    const timer = setTimeout(() => done(new Error('no answer')), timeoutMs);
    let settled = false;
    const done = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.end();
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket.once('error', done);
    client.once('error', done);
    client.once('ready', () => done());
    client.connect({ sock: socket, username: options.username, privateKey: options.privateKey, readyTimeout: timeoutMs, hostVerifier: () => true });
  });
}
