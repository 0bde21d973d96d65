/**
 * What every CLI command shares: the global options, one lazily made Broker, the progress line,
 * and the way results are printed.
 * @module
 */
import { coreOf } from '../broker/core.js';
import type { Command } from 'commander';
import { Broker } from '../broker/index.js';
import { UserInputError } from '../errors.js';
import type { LogLevel } from '../logger.js';
import type { HostRecord } from '../records.js';
import { ProgressLine } from './progress.js';

/** Options every command accepts. */
export interface GlobalOptions {
  directory?: string;
  json?: boolean;
  outputFile?: string;
  logLevel?: LogLevel;
}

/** What a command hands back: data (for `--json` and `--output-file`) and optional text for people. */
export interface CommandResult {
  data: unknown;
  text?: string;
  /** Exit status when the command itself decides it (e.g. `ssh`). */
  exitCode?: number;
}

/** Exit status after a signal, as shells report it: 128 + the signal's number. */
export const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/** What {@link CliContext.interruptible} prints on the first and the second signal. */
export interface InterruptMessages {
  /** After `hostbroker: SIGINT: `; `again` says how to exit at once. */
  stopping?: (again: string) => string;
  /** After `hostbroker: SIGINT again: exiting now. `: what is left and how to finish it. */
  exiting?: () => string;
}

/** Shared state of one CLI run. */
export class CliContext {
  result: CommandResult | undefined;
  /** The signal that interrupted the command, if one did (the runner exits with 128 + its number). */
  interrupted: keyof typeof SIGNAL_EXIT | undefined;
  readonly progress: ProgressLine;
  #broker: Broker | undefined;

  constructor(
    readonly program: Command,
    readonly io: { stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream; stdin: NodeJS.ReadStream },
  ) {
    this.progress = new ProgressLine(io.stderr);
  }

  /** @internal set by the runner: program options merged with the active command's. */
  globalsOverride: (() => GlobalOptions) | undefined;

  get globals(): GlobalOptions {
    return this.globalsOverride ? this.globalsOverride() : this.program.opts<GlobalOptions>();
  }

  /** The Broker for this run (settings from `--directory` or `$BROKER_DIRECTORY`). */
  broker(): Broker {
    if (!this.#broker) {
      const g = this.globals;
      this.#broker = new Broker({
        ...(g.directory ? { directory: g.directory } : {}),
        ...(g.logLevel ? { settings: { logLevel: g.logLevel } } : {}),
        onProgress: this.progress.onBroker,
      });
    }
    return this.#broker;
  }

  /**
   * Runs a command so that SIGINT/SIGTERM abort it through `signal`. By default the messages are
   * those of a command that creates hosts (the Broker then releases what it made and rejects
   * saying so); `messages` replaces them, e.g. for a command that releases hosts. A second signal
   * exits at once: records written before the provider calls stay in the inventory for `reap`
   * and `checkin`.
   */
  async interruptible<T>(fn: (signal: AbortSignal) => Promise<T>, messages: InterruptMessages = {}): Promise<T> {
    const controller = new AbortController();
    const onSignal = (name: keyof typeof SIGNAL_EXIT): void => {
      this.progress.clear();
      if (this.interrupted) {
        const left =
          messages.exiting?.() ??
          'Hosts still being made or released stay in the inventory; run `hostbroker reap`, then `hostbroker inventory` and `hostbroker checkin`.';
        this.io.stderr.write(`hostbroker: ${name} again: exiting now. ${left}\n`);
        process.exit(SIGNAL_EXIT[name]);
      }
      this.interrupted = name;
      const again = `${name === 'SIGINT' ? 'Ctrl-C' : 'signal'} again to exit at once`;
      this.io.stderr.write(`hostbroker: ${name}: ${messages.stopping?.(again) ?? `stopping and releasing the hosts made so far (${again})`}\n`);
      controller.abort(new Error(`interrupted by ${name}`));
    };
    const onInt = (): void => onSignal('SIGINT');
    const onTerm = (): void => onSignal('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    try {
      return await fn(controller.signal);
    } finally {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    }
  }

  /** Closes sessions; hosts stay checked out (the CLI never checks in on exit). */
  async close(): Promise<void> {
    await this.#broker?.close();
  }

  /**
   * Inventory records for command-line keys: record id, name, hostname, a deployment host's
   * name or FQDN, or the `#` index shown by `hostbroker inventory`.
   */
  async resolveHosts(keys: readonly string[]): Promise<HostRecord[]> {
    const broker = this.broker();
    const data = await coreOf(broker).store.snapshot();
    return keys.map((key) => {
      const all = data.hosts;
      const found = all.find((h) => h.id === key) ?? all.find((h) => h.name === key) ?? all.find((h) => h.hostname === key);
      if (found) return found;
      for (const d of data.deployments) {
        for (const [fqdn, info] of Object.entries(d.hosts)) {
          if (fqdn === key || info.name === key) {
            const r = all.find((h) => h.id === info.recordId);
            if (r) return r;
          }
        }
      }
      if (/^\d+$/.test(key) && Number(key) < all.length) return all[Number(key)]!;
      throw new UserInputError(
        `no host \`${key}\` in the inventory ${coreOf(broker).store.location}; run \`hostbroker inventory\` to see ids, names and # indexes.`,
      );
    });
  }
}
