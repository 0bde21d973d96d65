/**
 * Long-running commands on a host (`host.spawn`): output as streams and lines, stdin, `wait()`,
 * `kill()`, and disposal that ends and reaps the whole remote process tree.
 *
 * Signals over the transport are not enough: OpenSSH delivers a channel `signal` only to the
 * session's top process (and older servers refuse it), and a container engine's exec API has
 * none. So the command runs as the leader of its own session (sshd and the local server make it
 * one; elsewhere `setsid` does, keeping the pid), reports its pid on the first line of stdout,
 * and `kill` runs a second command that signals every process in that session or process group
 * or descended from it, found through /proc. The same shell text works on every transport.
 * @module
 */
import { StringDecoder } from 'node:string_decoder';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { quote } from './quote.js';
import { commandFailed, type ExecOptions, type OutputOptions, type Result } from './result.js';

/** Signals a process can be sent (names without SIG, as SSH names them). */
export type RemoteSignal = 'TERM' | 'KILL' | 'INT' | 'HUP' | 'QUIT';

/** What this module needs of a transport's process (the shape of the Session's `RemoteProcess`). */
interface RemoteProcess {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  exit: Promise<{ status: number | null; signal?: string }>;
  kill(signal?: RemoteSignal): void;
}

/** What this module needs of a transport: starting a shell command. */
interface Transport {
  spawn(command: string): Promise<RemoteProcess>;
}

/** Options for `host.spawn`. */
export interface ProcessOptions extends OutputOptions, Pick<ExecOptions, 'env' | 'cwd'> {
  /** Stops the process (as disposal does) when aborted. */
  signal?: AbortSignal;
  /** Milliseconds `stop()` and disposal wait after SIGTERM before SIGKILL (default 5000). */
  killTimeout?: number;
}

/** Output a process keeps for its Result (per stream, the end); streams and callbacks see it all. */
const KEEP = 1 << 20;
const MARK = 'hbpid ';

/** Runs the command as the leader of its own session and prints its pid and start time first. */
function launcher(command: string): string {
  return (
    'read -r s < /proc/$$/stat 2>/dev/null; s=${s##*) }; set -- $s; g=; ' +
    '[ "$3" = "$$" ] || { command -v setsid >/dev/null 2>&1 && g=setsid; }; ' +
    `printf '${MARK}%s %s\\n' $$ "\${20}"; exec $g /bin/sh -c ${quote(command)}`
  );
}

/**
 * Signals the session, the process group and the descendants of `pid` (never PID 1 or itself).
 * With `wait`, waits up to 5 s until they are gone (zombies count as gone: a container's PID 1
 * may never reap them) and prints those left. When `pid` now belongs to another process (its
 * start time differs: the number was reused), nothing is ours any more and nothing is signalled.
 */
export function treeSignalScript(pid: number, started: string | undefined, signal: RemoteSignal, wait: boolean): string {
  const lines = [
    ...(started ? [`if read -r s < /proc/${pid}/stat 2>/dev/null; then s=\${s##*) }; set -- $s; [ "\${20}" = ${quote(started)} ] || exit 0; fi`] : []),
    `list=$(for d in /proc/[0-9]*; do read -r s < "$d/stat" 2>/dev/null || continue; s=\${s##*) }; set -- $s; echo "\${d#/proc/} $2 $3 $4"; done |`,
    ` awk -v p=${pid} -v me=$$ '{ id[NR]=$1; pp[NR]=$2; if ($1==p || $3==p || $4==p) t[$1]=1 }`,
    ` END { do { c=0; for (i=1;i<=NR;i++) if (!(id[i] in t) && (pp[i] in t)) { t[id[i]]=1; c=1 } } while (c); for (k in t) if (k!=me && k!=1) print k }')`,
    `[ -n "$list" ] && kill -${signal} $list 2>/dev/null`,
  ];
  if (wait) {
    lines.push(
      'i=0; while :; do left=; for k in $list; do read -r s < /proc/$k/stat 2>/dev/null || continue; s=${s##*) }; case $s in Z*) ;; *) left="$left $k";; esac; done',
      '  [ -z "$left" ] || [ $i -ge 50 ] && break; i=$((i+1)); sleep 0.1; done',
      'echo "left:$left"',
    );
  }
  return `${lines.join('\n')}\ntrue`;
}

/** Calls `each` with the text of every chunk of a stream (UTF-8 split safely across chunks). */
export function follow(stream: Readable, each: (chunk: string) => void): void {
  const decoder = new StringDecoder('utf8');
  stream.on('data', (d: Buffer) => {
    const text = decoder.write(d);
    if (text) each(text);
  });
  stream.on('end', () => {
    const rest = decoder.end();
    if (rest) each(rest);
  });
}

/** One output stream of a process: kept for the Result (bounded), and a Readable on demand. */
class Output {
  readonly #kept: Buffer[] = [];
  #size = 0;
  #readable: PassThrough | undefined;
  #ended = false;
  /** Called with false when the reader is full, true when it drained. */
  constructor(private readonly flow: (go: boolean) => void) {}

  push(chunk: Buffer): void {
    this.#kept.push(chunk);
    this.#size += chunk.length;
    while (this.#size > KEEP && this.#kept.length > 1) this.#size -= this.#kept.shift()!.length;
    if (this.#readable && !this.#readable.write(chunk)) this.flow(false);
  }

  end(): void {
    this.#ended = true;
    this.#readable?.end();
  }

  /** The stream for a reader; what came before the first call is replayed (up to the kept end). */
  get readable(): Readable {
    if (!this.#readable) {
      const r = new PassThrough();
      r.on('drain', () => this.flow(true));
      for (const c of this.#kept) r.write(c);
      if (this.#ended) r.end();
      this.#readable = r;
    }
    return this.#readable;
  }

  text(): string {
    return Buffer.concat(this.#kept).toString('utf8');
  }
}

/** A command running on a host. `await using proc = await host.spawn(...)` stops it at the end of the scope. */
export class HostProcess implements AsyncDisposable {
  readonly command: string;
  /** The remote pid (the session leader of the command's tree), when the host reported it. */
  readonly pid: number | undefined;
  /** The start time of `pid` (clock ticks since boot), to tell it from a later process with the same number. */
  readonly #startedAt: string | undefined;
  /** The command's stdin; end it when done writing. */
  readonly stdin: Writable;
  readonly #transport: Transport;
  readonly #raw: RemoteProcess;
  readonly #out: Output;
  readonly #err: Output;
  readonly #label: string;
  readonly #options: ProcessOptions;
  readonly #started = Date.now();
  readonly #exit: Promise<{ status: number | null; signal?: string }>;
  #exited = false;
  /** The last signal this object sent to the tree. */
  #sent: RemoteSignal | undefined;
  #stopping: Promise<Result> | undefined;

  /** @internal use `host.spawn`. */
  constructor(init: {
    transport: Transport;
    raw: RemoteProcess;
    out: Output;
    err: Output;
    label: string;
    command: string;
    pid: number | undefined;
    startedAt: string | undefined;
    options: ProcessOptions;
  }) {
    this.#transport = init.transport;
    this.#raw = init.raw;
    this.#out = init.out;
    this.#err = init.err;
    this.#label = init.label;
    this.command = init.command;
    this.pid = init.pid;
    this.#startedAt = init.startedAt;
    this.#options = init.options;
    this.stdin = init.raw.stdin;
    this.#exit = init.raw.exit;
    this.#exit.then(
      () => (this.#exited = true),
      () => (this.#exited = true),
    );
    const signal = init.options.signal;
    if (signal) {
      const onAbort = (): void => void this.stop().catch(() => undefined);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      void this.#exit.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => undefined);
    }
  }

  /** stdout as a stream (output before the first access is replayed). Reading it is up to you. */
  get stdout(): Readable {
    return this.#out.readable;
  }

  /** stderr as a stream. */
  get stderr(): Readable {
    return this.#err.readable;
  }

  /** Whether the process has ended. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Lines of stdout (or stderr) as they come, without the newline: `for await (const line of proc.lines())`. */
  async *lines(stream: 'stdout' | 'stderr' = 'stdout'): AsyncGenerator<string> {
    const source = stream === 'stdout' ? this.stdout : this.stderr;
    let buffer = '';
    const decoder = new StringDecoder('utf8');
    for await (const chunk of source) {
      buffer += decoder.write(chunk as Buffer);
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        yield buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
      }
    }
    buffer += decoder.end();
    if (buffer) yield buffer;
  }

  /**
   * Resolves with the Result once the process ends (stdout/stderr: the last 1 MiB of each). With
   * `check`, a status other than 0 rejects with a CommandError, unless this object stopped it.
   */
  async wait(): Promise<Result> {
    const result = await this.#result();
    if (this.#options.check && result.status !== 0 && !this.#sent) throw commandFailed(result, this.#label);
    return result;
  }

  async #result(): Promise<Result> {
    const exit = await this.#exit;
    let signal = exit.signal?.replace(/^SIG/, '');
    let status = exit.status ?? (signal ? 128 + (SIGNAL_NUMBERS[signal] ?? 0) : 255);
    // A wrapper shell turns a signal into 128+N: the signal this object sent is the reason.
    if (!signal && this.#sent && status === 128 + SIGNAL_NUMBERS[this.#sent]!) signal = this.#sent;
    if (signal) status = exit.status ?? 128 + (SIGNAL_NUMBERS[signal] ?? 0);
    return {
      command: this.command,
      status,
      stdout: this.#out.text(),
      stderr: this.#err.text(),
      durationMs: Date.now() - this.#started,
      ...(signal ? { signal } : {}),
    };
  }

  /** Sends a signal (default TERM) to every process of the command's tree; resolves once sent. */
  async kill(signal: RemoteSignal = 'TERM'): Promise<void> {
    await this.#signalTree(signal, false);
  }

  /**
   * Ends the process tree and waits for it: SIGTERM, then SIGKILL after `killTimeout`, then a
   * last sweep for anything of the tree still running (background children of a finished
   * command included). Resolves with the Result; calls share one stop.
   */
  stop(options: { timeout?: number } = {}): Promise<Result> {
    this.#stopping ??= this.#stop(options.timeout ?? this.#options.killTimeout ?? 5000);
    return this.#stopping;
  }

  async #stop(timeout: number): Promise<Result> {
    // Each kill command is bounded too: a host that went away must not hold the caller.
    if (!this.#exited) {
      await settlesWithin(this.#signalTree('TERM', false), KILL_COMMAND_MS);
      if (!(await settlesWithin(this.#exit, timeout))) await settlesWithin(this.#signalTree('KILL', true), KILL_COMMAND_MS);
    }
    // Whatever the command left running in its session goes too.
    if (this.pid !== undefined) await settlesWithin(this.#signalTree('KILL', true, false), KILL_COMMAND_MS);
    if (!(await settlesWithin(this.#exit, 5000))) this.#raw.kill('KILL');
    return this.#result().catch((error: unknown) => {
      // The connection dropped: nothing is left to wait for.
      return {
        command: this.command,
        status: 255,
        stdout: this.#out.text(),
        stderr: `${this.#err.text()}${String(error)}`,
        durationMs: Date.now() - this.#started,
      };
    });
  }

  async #signalTree(signal: RemoteSignal, wait: boolean, remember = true): Promise<void> {
    if (remember && !this.#exited) this.#sent = signal;
    if (this.pid === undefined) {
      this.#raw.kill(signal);
      return;
    }
    const proc = await this.#transport.spawn(treeSignalScript(this.pid, this.#startedAt, signal, wait));
    proc.stdin.end();
    proc.stdout.resume();
    proc.stderr.resume();
    await proc.exit;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop().then(() => undefined);
  }
}

/** Longest one kill command of `stop()` may take. */
const KILL_COMMAND_MS = 15_000;

const SIGNAL_NUMBERS: Record<string, number> = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, SEGV: 11, PIPE: 13, ALRM: 14, TERM: 15 };

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return done;
}

/**
 * Starts a command through a transport (`full`: the command with its env and cwd prefix, see
 * `wrapCommand`); resolves once the host reported the pid.
 */
export async function startProcess(transport: Transport, label: string, command: string, full: string, options: ProcessOptions = {}): Promise<HostProcess> {
  const raw = await transport.spawn(launcher(full));
  const flow = (go: boolean): void => void (go ? raw.stdout.resume() : raw.stdout.pause());
  const flowErr = (go: boolean): void => void (go ? raw.stderr.resume() : raw.stderr.pause());
  const out = new Output(flow);
  const err = new Output(flowErr);
  const stdoutText = options.onStdout ? textOf(options.onStdout) : undefined;
  const stderrText = options.onStderr ? textOf(options.onStderr) : undefined;
  raw.stderr.on('data', (d: Buffer) => {
    err.push(d);
    stderrText?.(d);
  });
  raw.stderr.on('end', () => {
    err.end();
    stderrText?.(undefined);
  });
  const marker = await new Promise<string | undefined>((resolve) => {
    let head: Buffer | undefined = Buffer.alloc(0);
    raw.stdout.on('data', (d: Buffer) => {
      if (head === undefined) {
        out.push(d);
        stdoutText?.(d);
        return;
      }
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0 && head.length < 64) return;
      const first = head.subarray(0, Math.max(nl, 0)).toString();
      const rest = nl >= 0 && first.startsWith(MARK) ? head.subarray(nl + 1) : head;
      head = undefined;
      resolve(first.startsWith(MARK) ? first.slice(MARK.length) : undefined);
      if (rest.length) {
        out.push(rest);
        stdoutText?.(rest);
      }
    });
    raw.stdout.on('end', () => {
      if (head !== undefined) {
        if (head.length) out.push(head);
        head = undefined;
        resolve(undefined);
      }
      out.end();
      stdoutText?.(undefined);
    });
    raw.exit.then(
      () => resolve(undefined),
      () => resolve(undefined),
    );
  });
  const [pidText, startedAt] = (marker ?? '').split(' ');
  const pid = Number(pidText);
  return new HostProcess({
    transport,
    raw,
    out,
    err,
    label,
    command,
    pid: pidText && Number.isInteger(pid) && pid > 1 ? pid : undefined,
    startedAt: startedAt && /^[0-9]+$/.test(startedAt) ? startedAt : undefined,
    options,
  });
}

/** A decoder feeding a text callback; `undefined` flushes it. */
function textOf(each: (chunk: string) => void): (chunk: Buffer | undefined) => void {
  const decoder = new StringDecoder('utf8');
  return (chunk) => {
    const text = chunk === undefined ? decoder.end() : decoder.write(chunk);
    if (text) each(text);
  };
}
