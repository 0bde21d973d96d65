/**
 * What running a command on a host gives back.
 * @module
 */

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
export interface ExecOptions {
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
