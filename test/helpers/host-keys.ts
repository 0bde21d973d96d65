/**
 * Changed host keys for tests: a real sshd that starts serving another key (a rebuilt machine,
 * or someone in between), and what a fresh Broker process gets when it connects then.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Broker } from '../../lib/broker/index.js';
import type { Settings } from '../../lib/settings.js';
import type { Sshd } from './sshd.js';

/** Gives the sshd a new host key and restarts it (which also ends every connection to it). */
export async function changeHostKey(sshd: Sshd): Promise<void> {
  await rm(join(sshd.dir, 'host_key'));
  await rm(join(sshd.dir, 'host_key.pub'));
  await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshd.dir, 'host_key')], { timeout: 30_000 });
  await sshd.restart();
}

/** What running a command on the host fails with, from a new Broker (so a new connection). */
export async function freshConnectError(directory: string, settings: Settings, recordId: string): Promise<unknown> {
  const fresh = new Broker({ directory, settings });
  try {
    await fresh.reconstruct((await fresh.find(recordId))!).execute('true');
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await fresh.close();
  }
}
