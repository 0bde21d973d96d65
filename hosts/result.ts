/**
 * What running a command on a host gives back.
 * @module
 */
import { CommandError } from '../lib/errors.js';

/** The outcome of a command: exit status and output. */
export interface Result {
  /** The command that ran. */
  command: string;
  /** Exit status; 128+N when the command was killed by signal N and the server said so. */
  status: number;
  stdout: string;
  stderr: string;
  /** Signal name when the remote command was killed by a signal. */
  signal?: string;
  /** Wall time in milliseconds. */
  durationMs: number;
}

/** Options for {@link Session.run} and `host.execute`. */
export interface ExecOptions extends OutputOptions {
  /** Milliseconds before the remote command is ended and a TimeoutError thrown. */
  timeout?: number;
  /** Environment variables for the command. */
  env?: Record<string, string>;
  /** Directory to run in; a directory that does not exist is an error. */
  cwd?: string;
  /** Data for the command's stdin. */
  input?: string | Buffer | NodeJS.ReadableStream;
  /** Aborts the command like a timeout does. */
  signal?: AbortSignal;
}

/** Streaming and strictness options of {@link ExecOptions} (also taken by `host.spawn`). */
export interface OutputOptions {
  /** Called with each piece of stdout as it arrives (UTF-8 text); the Result still holds it all. */
  onStdout?: (chunk: string) => void;
  /** Called with each piece of stderr as it arrives. */
  onStderr?: (chunk: string) => void;
  /**
   * Reject with a `CommandError` (command, status, stdout/stderr tails) when the status is not 0.
   * Default: the Host's `check` (from the Broker's `check` option), else false.
   */
  check?: boolean;
}

/** Most characters of stdout and of stderr a `CommandError` keeps (the end: where the failure is). */
export const ERROR_TAIL = 4096;

/** The last `max` characters of a text, marked when cut. */
export function tail(text: string, max = ERROR_TAIL): string {
  return text.length <= max ? text : `…${text.slice(text.length - max + 1)}`;
}

/** The CommandError for a Result whose status is not 0. */
export function commandFailed(result: Result, where: string, host?: string): CommandError {
  const how = result.signal ? `was killed by SIG${result.signal}` : `exited with status ${result.status}`;
  const last = result.stderr.trim().split('\n').slice(-3).join(' | ').slice(-300);
  return new CommandError(`\`${result.command}\` on ${where} ${how}${last ? `: ${last}` : ''}`, {
    command: result.command,
    status: result.status,
    stdout: tail(result.stdout),
    stderr: tail(result.stderr),
    ...(result.signal ? { signal: result.signal } : {}),
    ...(host ? { host } : {}),
  });
}
