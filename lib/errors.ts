/**
 * Every error hostbroker throws is a {@link BrokerError} subclass with a stable `code`.
 * Messages say what was wrong and what to do; they never contain a secret.
 * @module
 */

const MARKER = Symbol.for('hostbroker.error');

/** Stable error codes, one per class. */
export type BrokerErrorCode =
  | 'BROKER'
  | 'SETTINGS'
  | 'USER_INPUT'
  | 'PROVIDER'
  | 'HOST_CONNECTION'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'INVENTORY'
  | 'COMMAND'
  | 'PARTIAL_FAILURE'
  | 'MISSING_DEPENDENCY'
  | 'DRIFT'
  | 'SCENARIO';

/** Options every BrokerError accepts. */
export interface BrokerErrorOptions {
  cause?: unknown;
}

/** Base class of every error hostbroker throws. */
export class BrokerError extends Error {
  readonly code: BrokerErrorCode = 'BROKER';
  /** Process exit status the CLI uses for this class of error. */
  static readonly exitCode: number = 1;

  constructor(message: string, options: BrokerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    Object.defineProperty(this, MARKER, { value: true });
  }

  /** True for any hostbroker error, even one from another copy of the package. */
  static isInstance(value: unknown): value is BrokerError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[MARKER] === true;
  }

  /** A plain object for JSON output (no stack, no cause chain with possible secrets). */
  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message };
  }
}

/** `broker_settings.yaml`, `.env` or an environment override is invalid. */
export class SettingsError extends BrokerError {
  override readonly code = 'SETTINGS' as const;
  static override readonly exitCode = 3;
}

/** A request, argument, nick, filter or args file given by the user is invalid. */
export class UserInputError extends BrokerError {
  override readonly code = 'USER_INPUT' as const;
  static override readonly exitCode = 2;
}

/** A provider (or the service behind it) failed. */
export class ProviderError extends BrokerError {
  override readonly code = 'PROVIDER' as const;
  static override readonly exitCode = 4;
  readonly provider: string;
  /** HTTP status or service error code, where the service gave one. */
  readonly status: number | string | undefined;
  /** Whether trying again may succeed (throttling, capacity, 5xx). */
  readonly retryable: boolean;
  /**
   * Hosts a failed checkout left behind that the provider did not release (e.g. a workflow that
   * made two of three VMs): the Broker records each as a kept host, so nothing is forgotten.
   */
  readonly dangling: DanglingHost[];

  constructor(
    provider: string,
    message: string,
    options: BrokerErrorOptions & { status?: number | string; retryable?: boolean; dangling?: DanglingHost[] } = {},
  ) {
    super(`[${provider}] ${message}`, options);
    this.provider = provider;
    this.status = options.status;
    this.retryable = options.retryable ?? false;
    this.dangling = options.dangling ?? [];
  }

  override toJSON(): Record<string, unknown> {
    return {
      ...super.toJSON(),
      provider: this.provider,
      status: this.status,
      retryable: this.retryable,
      ...(this.dangling.length ? { dangling: this.dangling.map((d) => d.name) } : {}),
    };
  }
}

/**
 * A TLS connection to a service was refused: its certificate is not trusted, has expired or
 * names another host. Never retried: trying again gives the same answer.
 */
export class TlsError extends ProviderError {
  /** Node's code of the failure, e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `CERT_HAS_EXPIRED`, `ERR_TLS_CERT_ALTNAME_INVALID`. */
  readonly tlsCode: string;
  /** `host:port` of the service. */
  readonly host: string;

  constructor(provider: string, message: string, options: BrokerErrorOptions & { tlsCode: string; host: string }) {
    super(provider, message, { ...(options.cause === undefined ? {} : { cause: options.cause }), status: options.tlsCode, retryable: false });
    this.tlsCode = options.tlsCode;
    this.host = options.host;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), tlsCode: this.tlsCode, host: this.host };
  }
}

/** A host a failed checkout left behind (see {@link ProviderError.dangling}). No secrets. */
export interface DanglingHost {
  name: string;
  hostname?: string;
  providerId?: string;
  data?: Record<string, unknown>;
}

/** Why a {@link HostConnectionError} happened, for callers that branch on it. */
export type HostConnectionReason = 'auth' | 'passphrase' | 'host-key' | 'unreachable' | 'dropped';

/** What {@link HostConnectionError} may say beyond its message. */
export interface HostConnectionErrorOptions extends BrokerErrorOptions {
  reason?: HostConnectionReason;
  /** Login methods tried, in order (e.g. `agent`, `publickey /path/key`, `password $ENV`): names, never secrets. */
  methodsTried?: string[];
  /** Login methods the server still accepted when it refused the last one. */
  methodsAccepted?: string[];
  /** The jump host (`user@host:port`) the failure happened at, when it was not the host itself. */
  via?: string;
}

/** A host could not be reached, refused the login, or dropped the connection. */
export class HostConnectionError extends BrokerError {
  override readonly code = 'HOST_CONNECTION' as const;
  static override readonly exitCode = 5;
  readonly reason: HostConnectionReason | undefined;
  readonly methodsTried: string[] | undefined;
  readonly methodsAccepted: string[] | undefined;
  readonly via: string | undefined;

  constructor(message: string, options: HostConnectionErrorOptions = {}) {
    super(message, options);
    this.reason = options.reason;
    this.methodsTried = options.methodsTried;
    this.methodsAccepted = options.methodsAccepted;
    this.via = options.via;
  }

  override toJSON(): Record<string, unknown> {
    const extra = { reason: this.reason, methodsTried: this.methodsTried, methodsAccepted: this.methodsAccepted, via: this.via };
    return { ...super.toJSON(), ...Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined)) };
  }
}

/** An operation did not finish within its limit. */
export class TimeoutError extends BrokerError {
  override readonly code = 'TIMEOUT' as const;
  static override readonly exitCode = 6;
  /** The limit that was exceeded, in milliseconds. */
  readonly timeoutMs: number;
  constructor(message: string, timeoutMs: number, options: BrokerErrorOptions = {}) {
    super(message, options);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * An operation was given up through its `signal` (or Ctrl-C in the CLI). Says, as data, what was
 * released, what was kept (its release failed: check it in later) and what never started.
 */
export class AbortedError extends BrokerError {
  override readonly code = 'ABORTED' as const;
  static override readonly exitCode = 130;
  /** Names of the hosts made and released again. */
  readonly released: string[];
  /** Ids of the records kept because their release failed (`hostbroker checkin ID` later). */
  readonly kept: string[];
  /** How many hosts were never started. */
  readonly neverStarted: number;
  /** What failed on its own before or during the abort (those records are among `kept`). */
  readonly failed: FailureEntry[];
  /** The signal's reason. */
  readonly reason: unknown;
  constructor(
    message: string,
    outcome: { released?: string[]; kept?: string[]; neverStarted?: number; failed?: FailureEntry[]; reason?: unknown } = {},
    options: BrokerErrorOptions = {},
  ) {
    super(message, options.cause === undefined && outcome.reason !== undefined ? { cause: outcome.reason } : options);
    this.released = outcome.released ?? [];
    this.kept = outcome.kept ?? [];
    this.neverStarted = outcome.neverStarted ?? 0;
    this.failed = outcome.failed ?? [];
    this.reason = outcome.reason;
  }
  override toJSON(): Record<string, unknown> {
    return {
      ...super.toJSON(),
      released: this.released,
      kept: this.kept,
      neverStarted: this.neverStarted,
      failed: this.failed.map((f) => ({ target: f.target, message: f.error.message })),
    };
  }
}

/** The inventory file is unreadable, invalid or locked for too long. */
export class InventoryError extends BrokerError {
  override readonly code = 'INVENTORY' as const;
  static override readonly exitCode = 7;
}

/** A remote command exited non-zero where success was required. */
export class CommandError extends BrokerError {
  override readonly code = 'COMMAND' as const;
  static override readonly exitCode = 8;
  readonly command: string;
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Signal name when the command was killed by a signal. */
  readonly signal: string | undefined;
  /** The host it ran on (its name), when known. */
  readonly host: string | undefined;
  constructor(
    message: string,
    result: { command: string; status: number; stdout: string; stderr: string; signal?: string; host?: string },
    options: BrokerErrorOptions = {},
  ) {
    super(message, options);
    this.command = result.command;
    this.status = result.status;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.signal = result.signal;
    this.host = result.host;
  }
  override toJSON(): Record<string, unknown> {
    return {
      ...super.toJSON(),
      command: this.command,
      status: this.status,
      stdout: this.stdout,
      stderr: this.stderr,
      ...(this.signal ? { signal: this.signal } : {}),
      ...(this.host ? { host: this.host } : {}),
    };
  }
}

/** One failure inside a many-host operation. */
export interface FailureEntry {
  /** What failed: a host name, record id, or "host #3". */
  target: string;
  error: Error;
}

/** A many-host operation (checkout, checkin, extend, deployment) had failures. */
export class PartialFailureError extends BrokerError {
  override readonly code = 'PARTIAL_FAILURE' as const;
  static override readonly exitCode = 9;
  readonly failures: FailureEntry[];
  /** What did succeed (hosts kept under `onPartialFailure: 'keep'`, records released, ...). */
  readonly succeeded: unknown[];
  constructor(summary: string, failures: FailureEntry[], succeeded: unknown[] = []) {
    super(`${summary}\n${failures.map((f) => `  - ${f.target}: ${f.error.message}`).join('\n')}`);
    this.failures = failures;
    this.succeeded = succeeded;
  }
  override toJSON(): Record<string, unknown> {
    return {
      ...super.toJSON(),
      succeeded: this.succeeded.map((s) => (typeof s === 'object' && s !== null && 'name' in s ? (s as { name: unknown }).name : s)),
      failures: this.failures.map((f) => ({
        target: f.target,
        error: BrokerError.isInstance(f.error) ? f.error.toJSON() : { name: f.error.name, message: f.error.message },
      })),
    };
  }
}

/** An optional package a provider needs is not installed. */
export class MissingDependencyError extends BrokerError {
  override readonly code = 'MISSING_DEPENDENCY' as const;
  static override readonly exitCode = 10;
  readonly packageName: string;
  constructor(packageName: string, neededFor: string, options: BrokerErrorOptions = {}) {
    super(`${neededFor} needs the package \`${packageName}\`, which is not installed: run \`npm install ${packageName}\`.`, options);
    this.packageName = packageName;
  }
}

/** Loads an optional module lazily, turning "not found" into a {@link MissingDependencyError}. */
export async function importOptional<T>(packageName: string, neededFor: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new MissingDependencyError(packageName, neededFor, { cause: error });
    }
    throw error;
  }
}

/** The message of anything thrown, for error lists. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Wraps anything thrown into an Error so it can be listed. */
export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
