/**
 * The OpenSSH client as a baseline: a `ControlMaster` connection to a test sshd, and `ssh`/`scp`
 * commands that go through it (so they skip key exchange, like a warm hostbroker host).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where to reach an sshd and with which key. */
export interface SshTarget {
  host: string;
  port: number;
  username: string;
  privateKeyPath: string;
}

/** A running ControlMaster and commands that reuse it. */
export interface OpenSshMaster {
  /** Runs `command` through the master with `ssh -S`. */
  exec(command: string): Promise<void>;
  /** `scp` (SFTP protocol) or `scp -O` (legacy protocol) through the master. */
  scp(from: string, to: string, legacy: boolean): Promise<void>;
  /** `user@host:` prefix for scp paths. */
  remote(path: string): string;
  stop(): Promise<void>;
}

/** Starts `ssh -M` in the background with its control socket in `dir`. */
export async function startMaster(target: SshTarget, dir: string): Promise<OpenSshMaster> {
  const sock = join(dir, 'cm.sock');
  const common = [
    '-F',
    '/dev/null',
    '-i',
    target.privateKeyPath,
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    `ControlPath=${sock}`,
  ];
  const dest = `${target.username}@${target.host}`;
  // -f returns once the master is authenticated; ControlPersist keeps it after the first client.
  await run('ssh', [...common, '-p', String(target.port), '-M', '-o', 'ControlPersist=yes', '-fN', dest]);
  return {
    async exec(command) {
      await run('ssh', [...common, '-S', sock, '-p', String(target.port), dest, command]);
    },
    async scp(from, to, legacy) {
      await run('scp', [...(legacy ? ['-O'] : []), '-q', ...common, '-P', String(target.port), from, to]);
    },
    remote: (path) => `${dest}:${path}`,
    async stop() {
      await run('ssh', [...common, '-S', sock, '-p', String(target.port), '-O', 'exit', dest]).catch(() => undefined);
    },
  };
}
