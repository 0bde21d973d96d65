/**
 * A `Session` is how a Host talks to its machine: run commands, move files, open a shell.
 * Every operation is built on one primitive, {@link Transport.spawn}, so an SSH connection and a
 * container engine's exec API give the same behaviour. Transports may add faster paths
 * (`readFile`/`writeFile`) that the Session prefers.
 * @module
 */
import { spawn as spawnLocal } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CommandError, TimeoutError, UserInputError } from '../lib/errors.js';
import { quote } from './quote.js';
import { commandFailed, type ExecOptions, type Result } from './result.js';
import { follow, startProcess, type HostProcess, type ProcessOptions, type RemoteSignal } from './process.js';

/** A process running on a host. */
export interface RemoteProcess {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Resolves when the process ends. `status` is null when it was killed without a status. */
  exit: Promise<{ status: number | null; signal?: string }>;
  /** Ends the remote process (signal where the server allows, then close). Default `KILL`. */
  kill(signal?: RemoteSignal): void;
  /** Resizes the terminal of a process started with `pty`. */
  resize?(rows: number, cols: number): void;
}

/** Signals a session can send to a remote process (names as SSH sends them, without SIG). */
export type { RemoteSignal } from './process.js';

/** Options for {@link Transport.spawn}. */
export interface SpawnOptions {
  /** Allocate a pseudo-terminal (interactive shells). */
  pty?: boolean | { rows?: number; cols?: number; term?: string };
  /** Part of a bulk file transfer: a transport may give each such stream a connection of its own. */
  bulk?: boolean;
}

/** What a session backend implements: start a shell command, and close. */
export interface Transport {
  /** Starts `command` with `/bin/sh -c` semantics on the host. */
  spawn(command: string, options?: SpawnOptions): Promise<RemoteProcess>;
  /** Starts the user's login shell (used by `shell()`); default is `spawn('exec "${SHELL:-/bin/sh}" -l', { pty })`. */
  spawnShell?(options: SpawnOptions): Promise<RemoteProcess>;
  /** Optional fast path for reading a whole file. */
  readFile?(path: string): Promise<Buffer>;
  /** Optional fast path for writing a whole file (creating parent directories). */
  writeFile?(path: string, data: Buffer, mode?: number): Promise<void>;
  /** How many parallel streams a big file transfer may use (`spawn` with `bulk`); default 1. */
  readonly bulkStreams?: number;
  /** Releases connections. Further use reconnects. */
  close(): Promise<void>;
  /** Resolves once the host accepts a login (SSH), for transports that can tell. */
  ready?(): Promise<void>;
  /** Human name of the peer, for messages. */
  readonly label: string;
}

/** A transport made on first use (e.g. by a provider that loads lazily). */
export interface TransportFactory {
  readonly label: string;
  connect(): Promise<Transport>;
}

/** Options for {@link Session.write}. */
export interface WriteOptions {
  /** File mode, e.g. `0o600`. */
  mode?: number;
}

/** A stream of lines from a remote file that is still growing. Stop it with `stop()`. */
export interface Tail extends AsyncIterable<string> {
  stop(): void;
}

/** Anything with a session: a Host, or a Session itself. */
export interface HasSession {
  readonly session: Session;
}

const CWD_MISSING = 'hostbroker: working directory does not exist: ';
/** Local file reads/writes in 1 MiB pieces: 64 KiB pieces halve upload throughput over SSH. */
const CHUNK = 1 << 20;
/** Files from this size on are split across the transport's bulk streams. */
const SPLIT_AT = 32 << 20;
/** Split ranges are whole blocks of this size, so POSIX `dd bs=... seek=/skip=` can address them. */
const BLOCK = 1 << 20;

/** Runs commands and moves files on one host. */
export class Session {
  readonly #given: Transport | TransportFactory;
  #transport: Transport | undefined;
  #connecting: Promise<Transport> | undefined;
  /** Processes started with `spawn` that still run. */
  readonly #processes = new Set<HostProcess>();

  /** Takes a transport, or a factory that makes one on first use. */
  constructor(transport: Transport | TransportFactory) {
    this.#given = transport;
    if (!('connect' in transport)) this.#transport = transport;
  }

  /** Human name of the peer, for messages. */
  get label(): string {
    return this.#given.label;
  }

  /** The transport, once made (undefined before a factory's first use). */
  get transport(): Transport | undefined {
    return this.#transport;
  }

  /** The transport, making it on first use. */
  async connected(): Promise<Transport> {
    if (this.#transport) return this.#transport;
    this.#connecting ??= (this.#given as TransportFactory).connect().then(
      (t) => (this.#transport = t),
      (error: unknown) => {
        this.#connecting = undefined;
        throw error;
      },
    );
    return this.#connecting;
  }

  /** Resolves once the host accepts a login, where the transport can tell; at once otherwise. */
  async ready(): Promise<void> {
    await (await this.connected()).ready?.();
  }

  /** Runs a command and collects its output. A non-zero status is returned, not thrown. */
  async run(cmd: string, options: ExecOptions = {}): Promise<Result> {
    const raw = await this.runRaw(cmd, options);
    const result = { ...raw, stdout: raw.stdout.toString('utf8'), stderr: raw.stderr.toString('utf8') };
    if (options.check && result.status !== 0) throw commandFailed(result, this.label);
    return result;
  }

  /** Like {@link run} but keeps stdout and stderr as Buffers. */
  async runRaw(cmd: string, options: ExecOptions = {}): Promise<Omit<Result, 'stdout' | 'stderr'> & { stdout: Buffer; stderr: Buffer }> {
    const started = Date.now();
    const full = wrapCommand(cmd, options);
    const proc = await (await this.connected()).spawn(full);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on('data', (d: Buffer) => out.push(d));
    proc.stderr.on('data', (d: Buffer) => err.push(d));
    if (options.onStdout) follow(proc.stdout, options.onStdout);
    if (options.onStderr) follow(proc.stderr, options.onStderr);
    feedInput(proc, options.input);

    const exit = await this.waitFor(proc, cmd, options);
    const stderr = Buffer.concat(err);
    if (options.cwd !== undefined && exit.status === 125 && stderr.toString().startsWith(CWD_MISSING)) {
      throw new UserInputError(
        `cannot run \`${cmd}\` on ${this.label}: the working directory ${options.cwd} does not exist; create it first or pass another cwd.`,
      );
    }
    const status = exit.status ?? (exit.signal ? 128 + (signalNumber(exit.signal) ?? 0) : 255);
    const result = { command: cmd, status, stdout: Buffer.concat(out), stderr, durationMs: Date.now() - started };
    return exit.signal ? { ...result, signal: exit.signal } : result;
  }

  /**
   * Starts a long-running command and returns at once: its output as streams (and lines), its
   * stdin, `wait()` for the Result and `kill()`; disposing it ends and reaps the whole remote
   * process tree. See docs/hosts.md.
   */
  async spawn(cmd: string, options: ProcessOptions = {}): Promise<HostProcess> {
    if (typeof cmd !== 'string' || !cmd.trim()) throw new UserInputError('spawn needs a command, e.g. `python3 -m http.server 8080`.');
    const proc = await startProcess(await this.connected(), this.label, cmd, wrapCommand(cmd, options), options);
    this.#processes.add(proc);
    const forget = (): boolean => this.#processes.delete(proc);
    proc.wait().then(forget, forget);
    return proc;
  }

  /**
   * Stops and reaps every process started with {@link spawn} that still runs (a host's checkin
   * does this): closing a connection alone leaves them running under OpenSSH.
   */
  async stopProcesses(): Promise<void> {
    await Promise.allSettled([...this.#processes].map((p) => p.stop()));
  }

  /** Reads a remote file. */
  async read(remote: string): Promise<Buffer> {
    const t = await this.connected();
    if (t.readFile) return t.readFile(remote);
    const r = await this.runRaw(`cat -- ${quote(remote)}`);
    if (r.status !== 0) throw fileError('read', remote, this.label, r);
    return r.stdout;
  }

  /**
   * Writes data (or a local file) to a remote path, creating parent directories. The file appears
   * under its name only once complete. A big local file goes over several streams at once when
   * the transport offers them ({@link Transport.bulkStreams}).
   */
  async write(data: string | Buffer | { localPath: string }, remote: string, options: WriteOptions = {}): Promise<void> {
    const localPath = typeof data === 'object' && 'localPath' in data ? data.localPath : undefined;
    const t = await this.connected();
    if (t.writeFile && localPath === undefined) {
      return t.writeFile(remote, Buffer.from(data as string | Buffer), options.mode);
    }
    const dir = remote.includes('/') ? remote.slice(0, remote.lastIndexOf('/')) || '/' : '.';
    const tmp = `${remote}.hb-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const chmod = options.mode !== undefined ? `chmod ${options.mode.toString(8)} -- ${quote(tmp)} && ` : '';
    const size = localPath === undefined ? 0 : await localSize(localPath, 'upload');
    const lanes = laneCount(size, (await this.connected()).bulkStreams);
    if (localPath !== undefined && lanes > 1) return this.writeSplit(localPath, size, lanes, remote, dir, tmp, chmod);
    const cmd = `mkdir -p -- ${quote(dir)} && cat > ${quote(tmp)} && ${chmod}mv -f -- ${quote(tmp)} ${quote(remote)} || { rm -f -- ${quote(tmp)}; exit 1; }`;
    const r =
      localPath !== undefined ? await this.runBulk(cmd, localPath, 0, undefined) : await this.runRaw(cmd, { input: Buffer.from(data as string | Buffer) });
    if (r.status !== 0) throw fileError('write', remote, this.label, r);
  }

  /** Upload in `lanes` block-aligned ranges, each `dd`-ed into place in one temporary file. */
  private async writeSplit(localPath: string, size: number, lanes: number, remote: string, dir: string, tmp: string, chmod: string): Promise<void> {
    const ranges = splitRanges(size, lanes);
    const results = await Promise.allSettled(
      ranges.map(({ first, start, end }) =>
        // POSIX dd: seek counts bs-sized blocks, notrunc keeps the other lanes' bytes.
        this.runBulk(`mkdir -p -- ${quote(dir)} && dd of=${quote(tmp)} bs=${BLOCK} seek=${first} conv=notrunc`, localPath, start, end),
      ),
    );
    const failed = results.find((r) => r.status === 'rejected' || r.value.status !== 0);
    const r = failed ? undefined : await this.runRaw(`${chmod}mv -f -- ${quote(tmp)} ${quote(remote)}`);
    if (r?.status !== 0) {
      await this.runRaw(`rm -f -- ${quote(tmp)}`).catch(() => undefined);
      if (failed?.status === 'rejected') throw failed.reason;
      const bad = failed?.status === 'fulfilled' ? failed.value : r!;
      throw fileError('write', remote, this.label, bad);
    }
  }

  /** Copies a local directory's contents into a remote directory (tar over the session). */
  async upload(localDir: string, remoteDir: string): Promise<void> {
    // The directory first, on its own: a remote side that fails while the tar stream is still being
    // sent can lose its reason (Podman's exec attach resets and drops the process's stderr).
    const made = await this.runRaw(`mkdir -p -- ${quote(remoteDir)}`);
    if (made.status !== 0) throw fileError('upload to', remoteDir, this.label, made);
    const consumer = await (await this.connected()).spawn(`tar -C ${quote(remoteDir)} -xf -`);
    const producer = localProcess('tar', ['-C', localDir, '-cf', '-', '.']);
    const { failed, ends } = await joinProcesses(producer, consumer);
    if (failed === 'producer')
      throw new UserInputError(`cannot upload ${localDir}: local tar ${endedHow(ends.producer)}; check that the directory exists and is readable.`);
    if (failed === 'consumer') throw fileError('upload to', remoteDir, this.label, asResult('tar -x', ends.consumer));
  }

  /** Copies a remote directory's contents into a local directory. */
  async download(remoteDir: string, localDir: string): Promise<void> {
    await mkdir(localDir, { recursive: true }).catch((error: unknown) => {
      throw new UserInputError(`cannot download ${remoteDir} into ${localDir}: ${(error as Error).message}; choose a local directory that can be created.`, {
        cause: error,
      });
    });
    const producer = await (await this.connected()).spawn(`tar -C ${quote(remoteDir)} -cf - .`);
    const consumer = localProcess('tar', ['-C', localDir, '-xf', '-']);
    const { failed, ends } = await joinProcesses(producer, consumer);
    if (failed === 'producer') throw fileError('download', remoteDir, this.label, asResult('tar -c', ends.producer));
    if (failed === 'consumer') throw new UserInputError(`cannot unpack ${remoteDir} into ${localDir}: local tar ${endedHow(ends.consumer)}.`);
  }

  /**
   * Downloads one remote file to a local path, streaming it (no copy of the whole file in memory);
   * a big file comes over several streams at once when the transport offers them. The file
   * appears under its name only once complete; a failed download leaves nothing behind.
   */
  async downloadFile(remote: string, localPath: string): Promise<void> {
    const t = await this.connected();
    if (t.readFile) {
      await writeFile(localPath, await t.readFile(remote));
      return;
    }
    const tmp = `${localPath}.hb-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    try {
      let lanes = 1;
      let size = 0;
      if (((await this.connected()).bulkStreams ?? 1) > 1) {
        const r = await this.runRaw(`wc -c < ${quote(remote)}`);
        if (r.status !== 0) throw fileError('read', remote, this.label, r);
        size = Number(r.stdout.toString().trim());
        lanes = laneCount(size, (await this.connected()).bulkStreams);
      }
      if (lanes > 1) {
        await writeFile(tmp, '');
        await Promise.all(
          splitRanges(size, lanes).map(({ first, start, end, last }) =>
            // The last range reads to the end, whatever the size is by then.
            this.downloadRange(
              `dd if=${quote(remote)} bs=${BLOCK} skip=${first}${last ? '' : ` count=${(end - start) / BLOCK}`}`,
              remote,
              tmp,
              start,
              last ? undefined : end - start,
            ),
          ),
        );
      } else {
        await this.downloadRange(`cat -- ${quote(remote)}`, remote, tmp, 0, undefined);
      }
      await rename(tmp, localPath);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }

  /** Streams one remote command's output into `localPath` from byte `start` on. */
  private async downloadRange(cmd: string, remote: string, localPath: string, start: number, expected: number | undefined): Promise<void> {
    const proc = await (await this.connected()).spawn(cmd, expected === undefined && start === 0 ? {} : { bulk: true });
    proc.stdin.end();
    const err: Buffer[] = [];
    proc.stderr.on('data', (d: Buffer) => err.push(d));
    let ended = false;
    proc.exit.then(
      () => (ended = true),
      () => (ended = true),
    );
    let received = 0;
    proc.stdout.on('data', (d: Buffer) => (received += d.length));
    try {
      await pipeline(proc.stdout, createWriteStream(localPath, { flags: start === 0 && expected === undefined ? 'w' : 'r+', start, highWaterMark: CHUNK }));
    } catch (error) {
      if (!ended) proc.kill();
      throw error;
    }
    const exit = await proc.exit;
    if (exit.status !== 0) {
      throw fileError('read', remote, this.label, { command: cmd, status: exit.status ?? 255, stdout: Buffer.alloc(0), stderr: Buffer.concat(err) });
    }
    if (expected !== undefined && received !== expected) {
      throw new CommandError(`cannot read ${remote} on ${this.label}: it changed size while it was being downloaded; try again once it is complete.`, {
        command: cmd,
        status: 0,
        stdout: '',
        stderr: '',
      });
    }
  }

  /**
   * Runs one stream of a bulk transfer, feeding it bytes `start` to `end` (or the end of the file)
   * of a local file; resolves with its status and stderr.
   */
  private async runBulk(
    cmd: string,
    localPath: string,
    start: number,
    end: number | undefined,
  ): Promise<{ command: string; status: number; stdout: Buffer; stderr: Buffer }> {
    const proc = await (await this.connected()).spawn(cmd, { bulk: true });
    const err: Buffer[] = [];
    proc.stdout.resume();
    proc.stderr.on('data', (d: Buffer) => err.push(d));
    const exited = proc.exit.then(
      () => undefined,
      () => undefined,
    );
    let inputError: unknown;
    sendFile(localPath, start, end, proc.stdin, exited).catch((error: unknown) => {
      inputError = new UserInputError(`cannot upload ${localPath}: ${(error as Error).message}; check that the local file exists and is readable.`, {
        cause: error,
      });
      proc.kill();
    });
    const exit = await proc.exit;
    if (inputError) throw inputError;
    return { command: cmd, status: exit.status ?? 255, stdout: Buffer.alloc(0), stderr: Buffer.concat(err) };
  }

  /** Copies a file or directory from this host straight to another host's session. */
  async copyTo(other: HasSession | Session, src: string, dest: string): Promise<void> {
    const target = other instanceof Session ? other : other.session;
    const isDir = (await this.run(`test -d ${quote(src)}`)).status === 0;
    const consumer = await (await target.connected()).spawn(
      isDir ? `mkdir -p -- ${quote(dest)} && tar -C ${quote(dest)} -xf -` : `mkdir -p -- "$(dirname -- ${quote(dest)})" && cat > ${quote(dest)}`,
    );
    let producer: RemoteProcess;
    try {
      producer = await (await this.connected()).spawn(isDir ? `tar -C ${quote(src)} -cf - .` : `cat -- ${quote(src)}`);
    } catch (error) {
      consumer.kill();
      throw error;
    }
    const { failed, ends } = await joinProcesses(producer, consumer);
    if (failed === 'producer') throw fileError('copy', src, this.label, asResult('copy', ends.producer));
    if (failed === 'consumer') throw fileError('copy to', dest, target.label, asResult('copy', ends.consumer));
  }

  /** Opens an interactive shell with a pseudo-terminal. */
  async shell(options: { rows?: number; cols?: number; term?: string } = {}): Promise<RemoteProcess> {
    const t = await this.connected();
    if (t.spawnShell) return t.spawnShell({ pty: options });
    return (await this.connected()).spawn('exec "${SHELL:-/bin/sh}" -l', { pty: options });
  }

  /** Follows a remote file, yielding lines as they are appended (like `tail -F`). */
  tail(path: string, options: { fromStart?: boolean } = {}): Tail {
    const procPromise = this.connected().then((t) => t.spawn(`exec tail -n ${options.fromStart ? '+1' : '0'} -F -- ${quote(path)} 2>/dev/null`));
    let proc: RemoteProcess | undefined;
    let stopped = false;
    const iterable = {
      stop(): void {
        stopped = true;
        proc?.kill('TERM');
      },
      async *[Symbol.asyncIterator](): AsyncGenerator<string> {
        proc = await procPromise;
        proc.stdin.end();
        if (stopped) {
          proc.kill('TERM');
          return;
        }
        let buffer = '';
        try {
          for await (const chunk of proc.stdout) {
            buffer += String(chunk);
            let nl: number;
            while ((nl = buffer.indexOf('\n')) >= 0) {
              yield buffer.slice(0, nl);
              buffer = buffer.slice(nl + 1);
            }
            if (stopped) break;
          }
        } finally {
          proc.kill('TERM');
        }
      },
    };
    return iterable;
  }

  /** Closes the transport's connections. */
  async close(): Promise<void> {
    await this.#transport?.close();
  }

  private waitFor(proc: RemoteProcess, cmd: string, options: ExecOptions): Promise<{ status: number | null; signal?: string }> {
    if (options.timeout === undefined && options.signal === undefined) return proc.exit;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (): void => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const stop = (error: Error): void => {
        finish();
        proc.kill('KILL');
        reject(error);
      };
      const onAbort = (): void => stop(new TimeoutError(`\`${cmd}\` on ${this.label} was aborted`, 0, { cause: options.signal?.reason }));
      if (options.timeout !== undefined) {
        timer = setTimeout(
          () =>
            stop(
              new TimeoutError(
                `\`${cmd}\` on ${this.label} did not finish within ${options.timeout} ms and was ended; raise \`timeout\` if it needs longer.`,
                options.timeout!,
              ),
            ),
          options.timeout,
        );
      }
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      proc.exit.then(
        (e) => {
          finish();
          resolve(e);
        },
        (e: unknown) => {
          finish();
          reject(e);
        },
      );
    });
  }
}

/** Adds env exports and a checked `cd` in front of a command. */
export function wrapCommand(cmd: string, options: Pick<ExecOptions, 'env' | 'cwd'>): string {
  let prefix = '';
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
      throw new UserInputError(`environment variable name ${JSON.stringify(k)} is not valid: use letters, digits and _.`);
    prefix += `export ${k}=${quote(v)}; `;
  }
  if (options.cwd !== undefined) {
    prefix += `cd -- ${quote(options.cwd)} 2>/dev/null || { printf '%s\\n' ${quote(CWD_MISSING + options.cwd)} >&2; exit 125; }; `;
  }
  return prefix ? `${prefix}${cmd}` : cmd;
}

function feedInput(proc: RemoteProcess, input: ExecOptions['input']): void {
  if (input === undefined) {
    proc.stdin.end();
    return;
  }
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    proc.stdin.end(input);
    return;
  }
  const source = input instanceof Readable ? input : Readable.from(input as AsyncIterable<Buffer>);
  pipeline(source, proc.stdin).catch(() => proc.stdin.destroy());
}

/**
 * Writes bytes `start` to `end` (or to the end) of a local file to `dest`, then ends it. It reads
 * into three buffers it reuses, each only once `dest` has taken the bytes it held: a fresh 1 MiB
 * buffer per read (a read stream) made every upload fault in new pages and run 2-3x as many
 * garbage collections, and cost up to twice the CPU. Stops when `stop` settles (the remote side
 * ended). Rejects only for a local read error.
 */
async function sendFile(path: string, start: number, end: number | undefined, dest: Writable, stop: Promise<unknown>): Promise<void> {
  const fh = await open(path, 'r');
  let stopped = false;
  void stop.then(() => (stopped = true));
  try {
    const buffers = [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
    const taken: Array<Promise<unknown> | undefined> = [];
    for (let pos = start, i = 0; !stopped; i = (i + 1) % buffers.length) {
      // A write whose callback never comes (the channel closed) must not hold the file open.
      await Promise.race([taken[i], stop]);
      const want = Math.min(CHUNK, (end ?? Infinity) - pos);
      if (stopped || want <= 0) break;
      const { bytesRead } = await fh.read(buffers[i]!, 0, want, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      // Write errors mean the remote side ended: its exit status says why.
      taken[i] = new Promise<void>((resolve) => dest.write(buffers[i]!.subarray(0, bytesRead), () => resolve()));
    }
    if (!stopped) {
      await Promise.race([Promise.all(taken), stop]);
      dest.end();
    }
  } finally {
    await fh.close();
  }
}

/** Streams for a file of `size` bytes: one below {@link SPLIT_AT}, else up to `streams`, each at least 16 MiB. */
function laneCount(size: number, streams = 1): number {
  if (streams <= 1 || size < SPLIT_AT) return 1;
  return Math.max(1, Math.min(streams, Math.floor(size / (SPLIT_AT / 2))));
}

/** `lanes` block-aligned byte ranges covering `size` bytes (`first` = first block). */
function splitRanges(size: number, lanes: number): Array<{ first: number; start: number; end: number; last: boolean }> {
  const blocks = Math.ceil(size / BLOCK);
  const per = Math.ceil(blocks / lanes);
  const out: Array<{ first: number; start: number; end: number; last: boolean }> = [];
  for (let first = 0; first < blocks; first += per) {
    out.push({ first, start: first * BLOCK, end: Math.min(size, (first + per) * BLOCK), last: first + per >= blocks });
  }
  return out;
}

async function localSize(path: string, verb: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    throw new UserInputError(`cannot ${verb} ${path}: ${(error as Error).message}; check that the local file exists and is readable.`, { cause: error });
  }
}

/** How a process of a transfer ended, with what it wrote to stderr. */
interface Ended {
  status: number | null;
  signal?: string;
  stderr: string;
}

/**
 * Runs a transfer's two ends joined like a shell pipe (producer's stdout into consumer's stdin)
 * and waits for both. A consumer may stop reading before the end: tar stops at its end-of-archive
 * blocks and leaves the producer's trailing padding unread. Whatever it no longer takes is read
 * and dropped, so the producer always finishes, and a transfer is judged by both exit statuses
 * only, never by a closed pipe. A consumer that fails while the producer still sends ends the
 * producer (nothing waits for data nobody takes); a producer whose connection drops ends the
 * consumer's input, so neither waits forever. `failed` is the end to blame; a dropped
 * connection rejects with its own error.
 */
async function joinProcesses(
  producer: RemoteProcess,
  consumer: RemoteProcess,
): Promise<{ failed?: 'producer' | 'consumer'; ends: { producer: Ended; consumer: Ended } }> {
  producer.stdin.on('error', () => undefined);
  producer.stdin.end();
  producer.stdout.on('error', () => undefined);
  consumer.stdout.on('error', () => undefined);
  consumer.stdout.resume();
  const producerErr = collect(producer.stderr);
  const consumerErr = collect(consumer.stderr);
  let sent = false;
  producer.stdout.once('end', () => (sent = true));
  const endInput = pump(producer.stdout, consumer.stdin);
  let stopped = false;
  const settle = (p: RemoteProcess) =>
    p.exit.then(
      (e) => ({ ...e, error: undefined as unknown }),
      (error: unknown) => ({ status: null, error }),
    );
  const [p, c] = await Promise.all([
    settle(producer).then((e) => {
      // Only a dropped producer: a finished one may still hold output the consumer has not taken.
      if (e.error !== undefined) endInput();
      return e;
    }),
    settle(consumer).then((e) => {
      if ((e.error !== undefined || e.status !== 0) && !sent) {
        stopped = true;
        producer.kill();
      }
      return e;
    }),
  ]);
  if (p.error !== undefined && !stopped) throw p.error;
  if (c.error !== undefined) throw c.error;
  const ends = { producer: { ...pick(p), stderr: producerErr() }, consumer: { ...pick(c), stderr: consumerErr() } };
  if (!stopped && p.status !== 0) return { failed: 'producer', ends };
  if (c.status !== 0) return { failed: 'consumer', ends };
  return { ends };
}

/**
 * Copies `source` into `sink` with back-pressure until the sink closes or fails; from then on
 * the source is read and dropped. Returns a function that ends the sink's input early.
 */
function pump(source: Readable, sink: Writable): () => void {
  let open = true;
  const drop = (): void => {
    open = false;
    source.resume();
  };
  const end = (): void => {
    if (open) sink.end();
    open = false;
  };
  sink.on('error', drop);
  sink.on('close', drop);
  sink.on('drain', () => source.resume());
  source.on('data', (chunk: Buffer) => {
    if (open && !sink.write(chunk)) source.pause();
  });
  source.on('end', end);
  source.on('error', end);
  return end;
}

function collect(stream: Readable): () => string {
  const parts: Buffer[] = [];
  stream.on('data', (d: Buffer) => parts.push(d));
  stream.on('error', () => undefined);
  return () => Buffer.concat(parts).toString().trim();
}

function pick(e: { status: number | null; signal?: string }): { status: number | null; signal?: string } {
  return e.signal ? { status: e.status, signal: e.signal } : { status: e.status };
}

function endedHow(e: Ended): string {
  const how = e.signal ? `was killed by SIG${e.signal}` : `exited ${e.status ?? 'without a status'}`;
  return e.stderr ? `${how}: ${e.stderr}` : how;
}

function asResult(command: string, e: Ended): { command: string; status: number; stdout: string; stderr: string } {
  return { command, status: e.status ?? 255, stdout: '', stderr: e.stderr };
}

/** A local process in the shape of a {@link RemoteProcess}, so a transfer treats both ends alike. */
function localProcess(command: string, args: string[]): RemoteProcess {
  const child = spawnLocal(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = new PassThrough();
  stderr.on('error', () => undefined);
  child.stderr!.pipe(stderr);
  const exit = new Promise<{ status: number | null; signal?: string }>((resolve) => {
    // A process that could not start emits 'error' and maybe never 'close' (EMFILE): the reason becomes its stderr.
    child.once('error', (error) => {
      child.stderr!.unpipe(stderr);
      if (!stderr.writableEnded) stderr.end(`cannot start ${command}: ${error.message}`);
      resolve({ status: 127 });
    });
    child.once('close', (code, signal) => resolve(signal ? { status: null, signal: signal.replace(/^SIG/, '') } : { status: code }));
  });
  return { stdin: child.stdin!, stdout: child.stdout!, stderr, exit, kill: (signal: RemoteSignal = 'KILL') => child.kill(`SIG${signal}`) };
}

function fileError(
  verb: string,
  path: string,
  label: string,
  r: { command: string; status: number; stdout: Buffer | string; stderr: Buffer | string },
): CommandError {
  const stderr = r.stderr.toString().trim();
  return new CommandError(`cannot ${verb} ${path} on ${label}: ${stderr || `exit status ${r.status}`}`, {
    command: r.command,
    status: r.status,
    stdout: r.stdout.toString(),
    stderr,
  });
}

const SIGNALS: Record<string, number> = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, SEGV: 11, PIPE: 13, ALRM: 14, TERM: 15 };
function signalNumber(name: string): number | undefined {
  return SIGNALS[name.replace(/^SIG/, '')];
}
