/**
 * The SSH server behind one `local` host: a detached Node process serving exec, shell and sftp
 * for one home directory on 127.0.0.1, accepting only that host's generated key.
 * Started by the local provider as `node server.js <config.json>`; prints `listening <port>`.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import ssh2 from 'ssh2';
import { HOST_MARKER, endProcesses, markedProcesses } from './processes.js';
import { serveSftp } from './sftp.js';

/** What the provider writes for the server. */
export interface LocalServerConfig {
  id: string;
  home: string;
  listen: string;
  hostKeyPath: string;
  authorizedKeyPath: string;
  /** Hostname commands see in $HOSTNAME. */
  name: string;
}

/** Commands whose first process has not exited yet (each leads its own session and process group). */
const commands = new Set<ChildProcess>();
/** Set once SIGTERM/SIGINT arrived: the shutdown ends the commands, not a closed channel. */
let stopping = false;

function main(): void {
  const configPath = process.argv[2];
  if (!configPath) {
    process.stderr.write('usage: server.js <config.json>\n');
    process.exit(2);
  }
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as LocalServerConfig;
  const allowed = ssh2.utils.parseKey(readFileSync(config.authorizedKeyPath));
  if (allowed instanceof Error) throw allowed;
  const allowedKey = Array.isArray(allowed) ? allowed[0]! : allowed;

  const user = userInfo().username;
  const server = new ssh2.Server({ hostKeys: [readFileSync(config.hostKeyPath)] }, (client, info) => {
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      const offered = ctx.key.data;
      // The host's own key, or one the user added to ~/.ssh/authorized_keys (bundles do), as sshd allows.
      const key = [allowedKey, ...homeKeys(config.home)].find((k) => {
        const pub = k.getPublicSSH();
        return ctx.key.algo === k.type && offered.length === pub.length && timingSafeEqual(offered, pub);
      });
      if (!key) return ctx.reject(['publickey']);
      if (ctx.signature && ctx.blob) {
        if (key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(['publickey']);
      }
      ctx.accept();
    });
    client.on('error', () => undefined);
    client.on('ready', () => {
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        const env: Record<string, string> = {};
        let pty: { term: string; rows: number; cols: number } | undefined;
        session.on('env', (accept, _reject, info) => {
          env[info.key] = info.val;
          accept?.();
        });
        session.on('pty', (accept, _reject, info) => {
          pty = { term: info.term, rows: info.rows, cols: info.cols };
          accept?.();
        });
        let signalChild: (signal: NodeJS.Signals) => void = () => undefined;
        session.on('window-change', (accept) => accept?.());
        session.on('signal', (accept, _reject, info) => {
          accept?.();
          signalChild(`SIG${info.name}` as NodeJS.Signals);
        });
        session.on('exec', (accept, _reject, request) => {
          // With a terminal asked for (`ssh -t`), `script` gives the command a real one, as for the shell.
          const argv = pty ? ['script', '-qfec', request.command, '/dev/null'] : ['/bin/sh', '-c', request.command];
          signalChild = run(accept(), argv, config, env, pty);
        });
        session.on('shell', (accept) => {
          // `script` gives the shell a real terminal when util-linux is there; without a terminal
          // (`ssh -T host < script`) the shell reads its stdin quietly, as under sshd.
          const argv = pty ? ['script', '-qfec', '/bin/sh -i', '/dev/null'] : ['/bin/sh'];
          signalChild = run(accept(), argv, config, env, pty);
        });
        // Our own SFTP server on the raw channel (not ssh2's), so it can offer OpenSSH's extensions.
        session.on('subsystem', (accept, reject, request) => {
          if (request.name !== 'sftp') return reject?.();
          serveSftp(accept(), { home: config.home, user, clientIdent: info.header.identRaw });
        });
      });
    });
  });

  // Our own listener, so every socket gets Nagle turned off (about 40 ms per command otherwise).
  const sockets = new Set<Socket>();
  const listener = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.setNoDelay(true);
    server.injectSocket(socket);
  });
  listener.listen(0, config.listen, () => {
    const address = listener.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    process.stdout.write(`listening ${port}\n`);
  });
  // The host is being checked in: everything its commands started ends with it, also what runs
  // in the background (`nohup x &`, in the command's process group) or left the group (found by
  // the marker). TERM, a second to go, then KILL, then exit (the provider waits longer than that).
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    listener.close();
    // Clients see their connection drop (a pending command fails), not an exit status from the kill.
    for (const socket of sockets) socket.destroy();
    // Groups of commands still running; their leaders are not reaped yet, so the ids are not reused.
    const groups = [...commands].flatMap((c) => (c.pid !== undefined ? [-c.pid] : []));
    const folder = dirname(config.home);
    void endProcesses(async () => [...groups, ...(await markedProcesses(folder))], 1000)
      .catch(() => undefined)
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The provider closes our stdout after reading the port: ignore that.
  process.stdout.on('error', () => undefined);
}

/** Public keys in `<home>/.ssh/authorized_keys` (read at each login, so added keys work at once). */
function homeKeys(home: string): ssh2.ParsedKey[] {
  let text: string;
  try {
    text = readFileSync(`${home}/.ssh/authorized_keys`, 'utf8');
  } catch {
    return [];
  }
  const keys: ssh2.ParsedKey[] = [];
  for (const line of text.split('\n')) {
    const parsed = line.trim() && !line.startsWith('#') ? ssh2.utils.parseKey(line.trim()) : undefined;
    if (parsed && !(parsed instanceof Error)) keys.push(...(Array.isArray(parsed) ? parsed : [parsed]));
  }
  return keys;
}

type Channel = ssh2.ServerChannel;

/** Runs a command for a channel; returns a function that signals its process group. */
function run(
  channel: Channel,
  argv: string[],
  config: LocalServerConfig,
  extraEnv: Record<string, string>,
  pty?: { term: string },
): (signal: NodeJS.Signals) => void {
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), {
    cwd: config.home,
    env: {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: config.home,
      USER: process.env.USER ?? 'root',
      LOGNAME: process.env.USER ?? 'root',
      SHELL: '/bin/sh',
      HOSTNAME: config.name,
      LANG: process.env.LANG ?? 'C.UTF-8',
      ...(pty ? { TERM: pty.term } : {}),
      ...extraEnv,
      [HOST_MARKER]: dirname(config.home),
    },
    // Own process group, so a signal or a closed channel ends the whole command tree.
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let ended = false;
  commands.add(child);
  child.on('exit', () => commands.delete(child));
  const killTree = (signal: NodeJS.Signals): void => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  child.stdout!.pipe(channel, { end: false });
  child.stderr!.pipe(channel.stderr, { end: false });
  channel.pipe(child.stdin!);
  child.stdin!.on('error', () => undefined);
  channel.on('close', () => {
    if (!ended && !stopping) killTree('SIGKILL');
  });
  child.on('error', (error) => {
    ended = true;
    commands.delete(child);
    if (stopping) return;
    channel.stderr.write(`${error.message}\n`);
    channel.exit(127);
    channel.end();
  });
  child.on('close', (code, signal) => {
    ended = true;
    if (stopping) return;
    // As sshd: all of stderr, then the exit status, then EOF and close once stdout is out.
    channel.stderr.end(() => {
      try {
        if (signal) channel.exit(signal.replace(/^SIG/, ''), false, '');
        else channel.exit(code ?? 0);
        channel.end();
      } catch {
        // the client went away first
      }
    });
  });
  return killTree;
}

main();
