/**
 * The SSH path of container hosts: a key pair made per host (kept as a file under the broker
 * directory; the record holds only its path), and a wait until a login with it works.
 * @module
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { HostConnectionError, TimeoutError, messageOf } from '../../lib/errors.js';
import { stripComment } from '../../lib/known-hosts.js';
import { type KeyPair, generateEd25519 } from '../../lib/ssh-keys.js';

/** Where the private key of a container host lives. */
export function keyPathFor(directory: string, recordId: string): string {
  return join(directory, 'keys', 'container', `${recordId}.key`);
}

/** Makes an ed25519 key pair for a host; writes the private key (0600) and returns the public line. */
export async function createHostKey(directory: string, recordId: string): Promise<{ privateKeyPath: string; publicKey: string }> {
  const pair = await generateEd25519(`hostbroker ${recordId}`, 'container');
  const privateKeyPath = keyPathFor(directory, recordId);
  await mkdir(join(directory, 'keys', 'container'), { recursive: true, mode: 0o700 });
  await writeFile(privateKeyPath, pair.private, { mode: 0o600 });
  return { privateKeyPath, publicKey: pair.public.trim() };
}

/**
 * Makes the ed25519 host key sshd in the container serves. hostbroker keeps only its public half
 * (pinned in the record), so the first login already checks it: nothing is trusted on first use.
 */
export async function createSshdHostKey(recordId: string): Promise<KeyPair> {
  const pair = await generateEd25519(`hostbroker ${recordId} host`, 'container');
  return { private: pair.private, public: stripComment(pair.public) };
}

/** Deletes a host's key file (missing is fine). */
export async function removeHostKey(directory: string, recordId: string): Promise<void> {
  await rm(keyPathFor(directory, recordId), { force: true });
}

/** Options for {@link waitForSshd}. */
export interface WaitForSshdOptions {
  host: string;
  port: number;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Says why waiting is pointless (e.g. the container exited), or undefined while it may still work. */
  check?: () => Promise<string | undefined>;
  label: string;
}

/**
 * Waits until sshd greets (`SSH-2.0-...`) on the published port. The key is in place before
 * sshd starts, so the login that follows (the Broker's, whose connection the session keeps)
 * works at once; a key exchange here as well would cost a second handshake per host.
 */
export async function waitForSshd(options: WaitForSshdOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let last = 'no attempt yet';
  let lastCheck = Date.now();
  for (;;) {
    if (options.signal?.aborted) throw new TimeoutError(`waiting for SSH on ${options.label} was aborted`, options.timeoutMs, { cause: options.signal.reason });
    try {
      await greeting(options.host, options.port, Math.max(500, Math.min(3000, deadline - Date.now())));
      return;
    } catch (error) {
      last = messageOf(error);
    }
    // Asking the engine costs it work while it may be starting other containers: every 2 s.
    if (options.check && Date.now() - lastCheck > 2000) {
      lastCheck = Date.now();
      const dead = await options.check();
      if (dead) throw new HostConnectionError(`${options.label} will not answer SSH: ${dead}`);
    }
    if (Date.now() > deadline) {
      const dead = await options.check?.();
      throw new TimeoutError(
        `${options.label} did not answer SSH within ${Math.round(options.timeoutMs / 1000)} s (last: ${last})${dead ? `; ${dead}` : ''}. ` +
          'Check that the image runs sshd on the port given in `ssh.port`, or raise ssh.readyTimeout.',
        options.timeoutMs,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Connects and reads the server's identification line. */
function greeting(host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port });
    let text = '';
    const timer = setTimeout(() => done(new Error('no greeting')), timeoutMs);
    const done = (error?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\n')) done(/^SSH-\d/m.test(text) ? undefined : new Error(`not an SSH server: ${JSON.stringify(text.slice(0, 40))}`));
    });
    socket.once('error', (e) => done(e));
    socket.once('close', () => done(new Error('closed before the SSH greeting')));
  });
}
