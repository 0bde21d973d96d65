/**
 * `hostbroker ssh <host> [command...]`: an interactive shell (or one command) through the
 * host's own session. That works the same for `local` hosts, real SSH hosts and hosts reached
 * through their provider (containers), and needs no `ssh` binary. Over SSH it checks the host's
 * pinned key (the one `<broker directory>/known_hosts` lists) and refuses a changed one; for
 * OpenSSH itself use `hostbroker output --ssh-config FILE` and `ssh -F FILE <host>`.
 * @module
 */
import type { Command } from 'commander';
import type { RemoteProcess } from '../../hosts/session.js';
import type { CliContext, CommandResult } from './context.js';

/** Wires a remote process to this process's stdio until it ends; returns its exit status. */
async function attach(proc: RemoteProcess, io: CliContext['io'], tty: boolean): Promise<number> {
  const { stdin, stdout, stderr } = io;
  proc.stdout.pipe(stdout, { end: false });
  proc.stderr.pipe(stderr, { end: false });
  const onResize = (): void => proc.resize?.(stdout.rows ?? 24, stdout.columns ?? 80);
  if (tty) {
    stdin.setRawMode(true);
    stdout.on('resize', onResize);
  }
  stdin.pipe(proc.stdin);
  stdin.resume();
  try {
    const { status, signal } = await proc.exit;
    // Let the last output drain before returning.
    await new Promise((r) => setImmediate(r));
    return status ?? (signal ? 128 + (signalNumbers[signal] ?? 1) : 255);
  } finally {
    stdin.unpipe(proc.stdin);
    if (tty) {
      stdin.setRawMode(false);
      stdout.off('resize', onResize);
    }
    stdin.pause();
  }
}

const signalNumbers: Record<string, number> = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, TERM: 15 };

export function registerSshCommand(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  program
    .command('ssh <host> [command...]')
    .description('open a shell on a host (id, name, deployment host name or # index), or run one command there')
    .passThroughOptions()
    .action((key: string, command: string[]) =>
      act(async () => {
        const [record] = await ctx.resolveHosts([key]);
        const host = ctx.broker().reconstruct(record!);
        const tty = ctx.io.stdin.isTTY === true && ctx.io.stdout.isTTY === true;
        let proc: RemoteProcess;
        if (command.length) {
          // Joined with spaces for the remote shell, as OpenSSH does.
          const line = command.join(' ');
          proc = await (await host.session.connected()).spawn(
            line,
            tty ? { pty: { rows: ctx.io.stdout.rows ?? 24, cols: ctx.io.stdout.columns ?? 80, term: process.env.TERM ?? 'xterm-256color' } } : {},
          );
        } else {
          proc = await host.session.shell({ rows: ctx.io.stdout.rows ?? 24, cols: ctx.io.stdout.columns ?? 80, term: process.env.TERM ?? 'xterm-256color' });
        }
        const status = await attach(proc, ctx.io, tty);
        return { data: { host: record!.name, status }, exitCode: status };
      }),
    );
}
