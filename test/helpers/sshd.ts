/**
 * Starts a real OpenSSH sshd on 127.0.0.1 for a test: its own temp dir, config, host key,
 * and a user key authorized for the current user.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';

/** Whether this machine can run sshd; in CI a missing sshd is a failure, not a skip. */
export function sshdAvailable(): boolean {
  const ok = existsSync(SSHD);
  if (!ok && process.env.CI === 'true') throw new Error(`${SSHD} is missing in CI: scripts/setup-test-env.sh installs openssh-server.`);
  return ok;
}

export interface Sshd {
  host: string;
  port: number;
  username: string;
  privateKeyPath: string;
  publicKey: string;
  dir: string;
  process: ChildProcess;
  /** Stops sshd and removes its dir. */
  stop(): Promise<void>;
  /** Kills sshd and every session it started (SIGKILL), keeping the dir for a restart. */
  kill(): Promise<void>;
  /** Starts sshd again on the same port with the same keys. */
  restart(): Promise<void>;
}

/** The Broker's `ssh` settings that log in to `sshd` (none without one). */
export function sshSettingsOf(sshd: Sshd | undefined): { ssh?: { username: string; port: number; privateKeyPath: string } } {
  return sshd ? { ssh: { username: sshd.username, port: sshd.port, privateKeyPath: sshd.privateKeyPath } } : {};
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(host: string, port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`sshd did not listen on ${host}:${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts sshd. `extra` lines are appended to sshd_config; `wrap` prefixes the command (e.g. `ip netns exec ns`). */
export async function startSshd(
  options: { extra?: string[]; listen?: string; wrap?: string[]; port?: number; waitFor?: () => Promise<void> } = {},
): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), 'hb-sshd-'));
  const listen = options.listen ?? '127.0.0.1';
  const port = options.port ?? (await freePort());
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id_ed25519')]);
  const publicKey = (await readFile(join(dir, 'id_ed25519.pub'), 'utf8')).trim();
  await writeFile(join(dir, 'authorized_keys'), `${publicKey}\n`, { mode: 0o600 });
  await mkdir('/run/sshd', { recursive: true }).catch(() => undefined);
  const config = [
    `Port ${port}`,
    `ListenAddress ${listen}`,
    `HostKey ${join(dir, 'host_key')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'PermitRootLogin yes',
    // bash skips root's .bashrc (pyenv init, ~0.5 s) when SHLVL is set.
    'SetEnv SHLVL=1',
    'Subsystem sftp internal-sftp',
    'LogLevel ERROR',
    ...(options.extra ?? []),
  ].join('\n');
  await writeFile(join(dir, 'sshd_config'), `${config}\n`);
  const sshd: Sshd = {
    host: listen,
    port,
    username: userInfo().username,
    privateKeyPath: join(dir, 'id_ed25519'),
    publicKey,
    dir,
    process: undefined as unknown as ChildProcess,
    async stop() {
      await sshd.kill();
      await rm(dir, { recursive: true, force: true });
    },
    async kill() {
      const pid = sshd.process.pid;
      if (pid !== undefined && sshd.process.exitCode === null && sshd.process.signalCode === null) {
        const exited = new Promise((r) => sshd.process.once('exit', r));
        // sshd -D stays in our process group; its session children are in their own: kill those too.
        await run('pkill', ['-KILL', '-P', String(pid)]).catch(() => undefined);
        sshd.process.kill('SIGKILL');
        await exited;
      }
    },
    async restart() {
      await sshd.kill();
      await launch();
    },
  };
  const launch = async (): Promise<void> => {
    const cmd = [...(options.wrap ?? []), SSHD, '-D', '-e', '-f', join(dir, 'sshd_config')];
    sshd.process = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    sshd.process.stderr!.on('data', (d: Buffer) => (stderr += String(d)));
    try {
      // An sshd in a network namespace this process cannot reach says it listens through `waitFor`.
      await (options.waitFor ? options.waitFor() : waitForPort(listen, port));
    } catch (error) {
      throw new Error(`${(error as Error).message}: ${stderr}`);
    }
  };
  await launch();
  return sshd;
}
