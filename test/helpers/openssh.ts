/**
 * Command lines of the real OpenSSH clients (`ssh`, `scp`, `sftp`, `rsync -e ssh`) for a host
 * hostbroker handed out, the way a user or Ansible runs them, and a runner that kills a client
 * that hangs so the test fails instead of stalling the suite.
 */
import { spawn } from 'node:child_process';
import type { HostRecord } from '../../lib/records.js';

/** Where and as whom a client connects. */
export interface SshTarget {
  host: string;
  port: number;
  username: string;
  privateKeyPath: string;
  /** The broker's known_hosts file (`broker.knownHostsFile`): host keys are checked against it. */
  knownHostsFile: string;
}

export function targetOf(record: HostRecord, knownHostsFile: string): SshTarget {
  const c = record.connection;
  if (c?.kind !== 'ssh' || !c.privateKeyPath) throw new Error(`${record.name} has no SSH connection with a key file (${JSON.stringify(c)})`);
  return { host: c.host, port: c.port ?? 22, username: c.username ?? 'root', privateKeyPath: c.privateKeyPath, knownHostsFile };
}

/** The host-key options every client gets: the one place that decides how host keys are checked (pinned, strictly). */
export function hostKeyOptions(target: SshTarget): string[] {
  return ['-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${target.knownHostsFile}`];
}

/** Connection sharing exactly as Ansible's ssh plugin asks for it. */
export function controlMasterOptions(controlPath: string): string[] {
  return ['-o', 'ControlMaster=auto', '-o', `ControlPath=${controlPath}`, '-o', 'ControlPersist=60s'];
}

export interface ClientOptions {
  /** Share one connection through this control socket (see controlMasterOptions). */
  controlPath?: string;
  /** More `-o` options, after the others (so they win). */
  extra?: string[];
}

/** The `-o` options ssh, scp and sftp all take (rsync passes them on through `-e`). */
export function clientOptions(target: SshTarget, options: ClientOptions = {}): string[] {
  const settings = [
    `Port=${target.port}`,
    `User=${target.username}`,
    `IdentityFile=${target.privateKeyPath}`,
    'IdentitiesOnly=yes',
    'BatchMode=yes',
    'ConnectTimeout=10',
    'LogLevel=ERROR',
  ];
  return [
    ...settings.flatMap((s) => ['-o', s]),
    ...hostKeyOptions(target),
    ...(options.controlPath ? controlMasterOptions(options.controlPath) : []),
    ...(options.extra ?? []),
  ];
}

/** `host:path` as scp, sftp and rsync write a remote path (an IPv6 address in brackets). */
export function remote(target: SshTarget, path: string): string {
  return `${target.host.includes(':') ? `[${target.host}]` : target.host}:${path}`;
}

/** `ssh host command`; without a command, the login shell without a terminal (`-T`); `tty` forces one (`-tt`). */
export function sshArgv(target: SshTarget, command: string | undefined, options: ClientOptions & { tty?: boolean } = {}): string[] {
  const terminal = options.tty ? ['-tt'] : command === undefined ? ['-T'] : [];
  return ['ssh', ...terminal, ...clientOptions(target, options), target.host, ...(command === undefined ? [] : [command])];
}

/** `scp`; `legacy` is `-O` (the old scp protocol instead of SFTP), `preserve` is `-p` (times and modes). */
export function scpArgv(
  target: SshTarget,
  from: string[],
  to: string,
  options: ClientOptions & { legacy?: boolean; recursive?: boolean; preserve?: boolean } = {},
): string[] {
  const flags = [...(options.legacy ? ['-O'] : []), ...(options.recursive ? ['-r'] : []), ...(options.preserve ? ['-p'] : [])];
  return ['scp', ...flags, ...clientOptions(target, options), ...from, to];
}

/** `sftp -b <batch>` (`-` reads the batch from stdin, as Ansible does); without a batch, commands come on stdin. */
export function sftpArgv(target: SshTarget, options: ClientOptions & { batch?: string } = {}): string[] {
  return ['sftp', ...(options.batch ? ['-b', options.batch] : []), ...clientOptions(target, options), target.host];
}

/** `rsync -e 'ssh <options>' <args>`. */
export function rsyncArgv(target: SshTarget, args: string[], options: ClientOptions = {}): string[] {
  const quote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['rsync', '-e', ['ssh', ...clientOptions(target, options)].map(quote).join(' '), ...args];
}

/** Stops the master behind a control socket (`ssh -O exit`); quiet when none runs. */
export async function stopMaster(target: SshTarget, controlPath: string): Promise<void> {
  await runClient(['ssh', '-O', 'exit', '-o', `ControlPath=${controlPath}`, target.host], { timeoutMs: 10_000 }).catch(() => undefined);
}

export interface ClientResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a client to its end. A client still running after `timeoutMs` is killed with everything
 * it started (its process group; a ControlPersist master detaches from it) and the promise
 * rejects, saying what was running and what it printed.
 */
export function runClient(argv: string[], options: { input?: string | Buffer; timeoutMs?: number; cwd?: string } = {}): Promise<ClientResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: options.cwd, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += String(d)));
    child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
      reject(new Error(`${argv.join(' ')} did not finish within ${timeoutMs} ms (a hang); stdout: ${stdout.slice(-500)} stderr: ${stderr.slice(-500)}`));
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a client and fails unless it exits 0. */
export async function runOk(argv: string[], options: Parameters<typeof runClient>[1] = {}): Promise<ClientResult> {
  const result = await runClient(argv, options);
  if (result.status !== 0)
    throw new Error(`${argv[0]} exited ${result.status ?? result.signal}: ${result.stderr.trim() || result.stdout.trim()}\n  ${argv.join(' ')}`);
  return result;
}
