/**
 * A {@link Transport} over the engine's exec API: works with any image that has `/bin/sh`, no
 * sshd needed. Commands run under a small wrapper that records their PID, so `kill` can end the
 * whole process tree with a second exec (the API itself has no way to signal an exec).
 * Files move through the archive API.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import type { Duplex } from 'node:stream';
import { CommandError, HostConnectionError } from '../../lib/errors.js';
import { quote } from '../../hosts/quote.js';
import type { RemoteProcess, RemoteSignal, SpawnOptions, Transport } from '../../hosts/session.js';
import { packFile, firstEntry } from './archive.js';
import { type Engine, engineMessage, isEngineGone, statusOf } from './engine.js';

/** Options for {@link ExecTransport}. */
export interface ExecTransportOptions {
  /** The engine (connected lazily on first use). */
  engine: () => Promise<Engine>;
  /** Container id or name. */
  container: string;
  /** User commands run as (the container's user when omitted). */
  user?: string;
  /** Human name for messages. */
  label: string;
}

const SIGNALS: Record<RemoteSignal, number> = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, TERM: 15 };

/**
 * `$1` is the command. The wrapper writes its PID, runs the command as a child, removes the PID
 * file and exits with the command's status.
 */
function wrapper(pidFile: string): string {
  return `{ echo $$ > ${pidFile}; } 2>/dev/null; /bin/sh -c "$1"; s=$?; rm -f ${pidFile}; exit $s`;
}

/** Sends a signal to the PID in the file and all its descendants (found through /proc/N/stat). */
function killScript(pidFile: string, signal: RemoteSignal): string {
  return [
    `read -r p < ${pidFile} 2>/dev/null || exit 0`,
    'all=$p; new=$p',
    'while [ -n "$new" ]; do',
    '  next=',
    '  for d in /proc/[0-9]*; do',
    '    read -r s < "$d/stat" 2>/dev/null || continue',
    '    s=${s##*) }; set -- $s',
    '    for q in $new; do [ "$2" = "$q" ] && next="$next ${d#/proc/}"; done',
    '  done',
    '  all="$all $next"; new=$next',
    'done',
    `kill -${signal} $all 2>/dev/null`,
    `rm -f ${pidFile}`,
  ].join('\n');
}

/** Runs commands in a container through the engine's exec API. */
export class ExecTransport implements Transport {
  readonly label: string;
  private readonly options: ExecTransportOptions;

  constructor(options: ExecTransportOptions) {
    this.options = options;
    this.label = options.label;
  }

  async spawn(command: string, options: SpawnOptions = {}): Promise<RemoteProcess> {
    const engine = await this.engine();
    const tty = !!options.pty;
    const pty = typeof options.pty === 'object' ? options.pty : {};
    const pidFile = `/tmp/.hostbroker-exec-${randomBytes(6).toString('hex')}.pid`;
    const container = engine.docker.getContainer(this.options.container);
    let stream: Duplex;
    let exec: import('dockerode').Exec;
    try {
      exec = await container.exec({
        Cmd: ['/bin/sh', '-c', wrapper(pidFile), 'hostbroker-exec', command],
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
        Tty: tty,
        ...(tty ? { Env: [`TERM=${pty.term ?? 'xterm-256color'}`] } : {}),
        ...(this.options.user ? { User: this.options.user } : {}),
      });
      stream = (await exec.start({ hijack: true, stdin: true, Tty: tty })) as unknown as Duplex;
    } catch (error) {
      throw this.error(error, engine, `start \`${command}\``);
    }
    if (tty && (pty.rows || pty.cols)) exec.resize({ h: pty.rows ?? 24, w: pty.cols ?? 80 }).catch(() => undefined);

    const stdout = new PassThrough();
    const stderr = new PassThrough();
    if (tty) stream.pipe(stdout);
    else engine.docker.modem.demuxStream(stream, stdout, stderr);

    let ended = false;
    const streamDone = new Promise<void>((resolve) => {
      const finish = (): void => {
        if (ended) return;
        ended = true;
        stdout.end();
        stderr.end();
        resolve();
      };
      stream.on('end', finish);
      stream.on('close', finish);
      stream.on('error', finish);
    });

    const stdin = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (ended) return callback();
        stream.write(chunk, (e) => callback(ended ? null : e));
      },
      final(callback) {
        // Half-close: the engine closes the process's stdin and keeps sending output.
        if (!ended) stream.end();
        callback();
      },
    });
    stdin.on('error', () => undefined);

    let killedWith: RemoteSignal | undefined;
    const exit = streamDone.then(async () => {
      const code = await exitCodeOf(exec);
      if (killedWith && (code === null || code === 128 + SIGNALS[killedWith] || code === 137 || code === 143)) {
        return { status: null, signal: killedWith };
      }
      return { status: code };
    });

    const kill = (signal: RemoteSignal = 'KILL'): void => {
      if (ended) return;
      killedWith = signal;
      void this.run(engine, killScript(pidFile, signal))
        .catch(() => undefined)
        .then(() => {
          // The tree is gone; do not wait for the engine to notice the closed pipes.
          if (signal === 'KILL') setTimeout(() => stream.destroy(), 2000).unref();
        });
    };

    return {
      stdin,
      stdout,
      stderr,
      exit,
      kill,
      resize: (rows: number, cols: number) => {
        if (tty) exec.resize({ h: rows, w: cols }).catch(() => undefined);
      },
    };
  }

  async spawnShell(options: SpawnOptions): Promise<RemoteProcess> {
    return this.spawn('if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi', { pty: options.pty ?? true });
  }

  async readFile(path: string): Promise<Buffer> {
    if (!path.startsWith('/')) return this.readByShell(path);
    const engine = await this.engine();
    let archive: NodeJS.ReadableStream;
    try {
      archive = await engine.docker.getContainer(this.options.container).getArchive({ path });
    } catch (error) {
      // Archive endpoints stream, so the engine's message is lost: ask whether the container exists.
      if (statusOf(error) === 404 && (await this.exists(engine))) {
        throw new CommandError(`cannot read ${path} on ${this.label}: No such file or directory`, {
          command: `read ${path}`,
          status: 1,
          stdout: '',
          stderr: 'No such file or directory',
        });
      }
      throw this.error(error, engine, `read ${path}`);
    }
    const entry = await firstEntry(archive);
    if (entry?.type === 'file') return entry.data;
    if (entry?.type === 'symlink' || entry?.type === 'link') return this.readByShell(path);
    const what = entry?.type === 'directory' ? 'Is a directory' : `not a regular file (${entry?.type ?? 'empty archive'})`;
    throw new CommandError(`cannot read ${path} on ${this.label}: ${what}`, { command: `read ${path}`, status: 1, stdout: '', stderr: what });
  }

  async writeFile(path: string, data: Buffer, mode?: number): Promise<void> {
    // The archive API writes as root relative to /; other cases go through the user's shell.
    if (!path.startsWith('/') || path.endsWith('/') || (this.options.user && !/^(0|root)(:|$)/.test(this.options.user))) {
      return this.writeByShell(path, data, mode);
    }
    const engine = await this.engine();
    const container = engine.docker.getContainer(this.options.container);
    const dir = posix.dirname(path);
    const tar = await packFile(posix.basename(path), data, mode ?? 0o644);
    for (let attempt = 0; ; attempt++) {
      try {
        await container.putArchive(tar, { path: dir });
        return;
      } catch (error) {
        const missingDir = statusOf(error) === 404 && (await this.exists(engine));
        if (missingDir && attempt === 0) {
          const r = await this.run(engine, `mkdir -p -- ${quote(dir)}`);
          if (r.status === 0) continue;
          throw new CommandError(`cannot write ${path} on ${this.label}: cannot create ${dir}: ${r.output.trim()}`, {
            command: `write ${path}`,
            status: r.status,
            stdout: '',
            stderr: r.output,
          });
        }
        const status = statusOf(error);
        if (status !== undefined && status < 500 && status !== 404) {
          throw new CommandError(`cannot write ${path} on ${this.label}: ${engineMessage(error)}`, {
            command: `write ${path}`,
            status: 1,
            stdout: '',
            stderr: engineMessage(error),
          });
        }
        throw this.error(error, engine, `write ${path}`);
      }
    }
  }

  async close(): Promise<void> {
    // Every request uses its own socket; nothing to close.
  }

  private async exists(engine: Engine): Promise<boolean> {
    try {
      await engine.docker.getContainer(this.options.container).inspect();
      return true;
    } catch {
      return false;
    }
  }

  private engine(): Promise<Engine> {
    return this.options.engine();
  }

  /** Runs a helper command to completion (no stdin), returning status and combined output. */
  private async run(engine: Engine, script: string): Promise<{ status: number; output: string }> {
    const exec = await engine.docker.getContainer(this.options.container).exec({
      Cmd: ['/bin/sh', '-c', script],
      AttachStdout: true,
      AttachStderr: true,
      ...(this.options.user ? { User: this.options.user } : {}),
    });
    const stream = (await exec.start({ hijack: true, stdin: false })) as unknown as Duplex;
    const out = new PassThrough();
    const parts: Buffer[] = [];
    out.on('data', (c: Buffer) => parts.push(c));
    engine.docker.modem.demuxStream(stream, out, out);
    await new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    return { status: (await exitCodeOf(exec)) ?? 255, output: Buffer.concat(parts).toString() };
  }

  private async readByShell(path: string): Promise<Buffer> {
    const proc = await this.spawn(`cat -- ${quote(path)}`);
    proc.stdin.end();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on('data', (c: Buffer) => out.push(c));
    proc.stderr.on('data', (c: Buffer) => err.push(c));
    const { status } = await proc.exit;
    if (status !== 0) {
      const stderr = Buffer.concat(err).toString().trim();
      throw new CommandError(`cannot read ${path} on ${this.label}: ${stderr || `exit status ${status}`}`, {
        command: `cat -- ${quote(path)}`,
        status: status ?? 255,
        stdout: '',
        stderr,
      });
    }
    return Buffer.concat(out);
  }

  private async writeByShell(path: string, data: Buffer, mode?: number): Promise<void> {
    const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) || '/' : '.';
    const chmod = mode !== undefined ? ` && chmod ${mode.toString(8)} -- ${quote(path)}` : '';
    const cmd = `mkdir -p -- ${quote(dir)} && cat > ${quote(path)}${chmod}`;
    const proc = await this.spawn(cmd);
    const err: Buffer[] = [];
    proc.stderr.on('data', (c: Buffer) => err.push(c));
    proc.stdout.resume();
    proc.stdin.end(data);
    const { status } = await proc.exit;
    if (status !== 0) {
      const stderr = Buffer.concat(err).toString().trim();
      throw new CommandError(`cannot write ${path} on ${this.label}: ${stderr || `exit status ${status}`}`, {
        command: cmd,
        status: status ?? 255,
        stdout: '',
        stderr,
      });
    }
  }

  private error(error: unknown, engine: Engine, doing: string): Error {
    if (isEngineGone(error)) {
      return new HostConnectionError(
        `cannot ${doing} on ${this.label}: the container engine at ${engine.where} does not answer (${(error as { code?: string }).code ?? engineMessage(error)}); start it again.`,
        { cause: error },
      );
    }
    const message = engineMessage(error);
    if (statusOf(error) === 404) {
      return new HostConnectionError(
        `cannot ${doing} on ${this.label}: the container no longer exists (removed outside hostbroker?); check the host in and out again.`,
        { cause: error },
      );
    }
    if (statusOf(error) === 409 || /not running|is paused|stopped/i.test(message)) {
      return new HostConnectionError(
        `cannot ${doing} on ${this.label}: the container is not running (${message}); start it (\`podman start\`/\`docker start\`) or check the host in.`,
        { cause: error },
      );
    }
    return new HostConnectionError(`cannot ${doing} on ${this.label}: ${message}`, { cause: error });
  }
}

/**
 * The exit code of a finished exec. The engine may record it a moment after output ends, and
 * much later on a loaded machine: giving up after a fixed number of polls (about 2 s) would turn
 * a command that succeeded into a failure. Null only if the engine still says "running" after 30 s.
 */
async function exitCodeOf(exec: import('dockerode').Exec): Promise<number | null> {
  const deadline = Date.now() + 30_000;
  for (let i = 0; ; i++) {
    try {
      const info = await exec.inspect();
      if (!info.Running && info.ExitCode !== null && info.ExitCode !== undefined) return info.ExitCode;
    } catch {
      return null;
    }
    if (Date.now() > deadline) return null;
    await new Promise((r) => setTimeout(r, i < 10 ? 10 : 50));
  }
}
