/**
 * `hostbroker forget`: drops inventory records without asking their providers, for hosts a person
 * removed by hand or that no provider can release. It asks first on a terminal; elsewhere it needs
 * `--yes`, so a script never drops records by accident.
 * @module
 */
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { UserInputError } from '../errors.js';
import type { HostRecord } from '../records.js';
import type { CliContext, CommandResult } from './context.js';

const describe = (r: HostRecord): string => `${r.name} (${r.id}, ${r.provider}, ${r.state})`;

/** Asks on the terminal; true only for an answer starting with y. */
async function confirm(ctx: CliContext, question: string): Promise<boolean> {
  const rl = createInterface({ input: ctx.io.stdin, output: ctx.io.stderr });
  try {
    return /^y/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export function registerForgetCommand(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  program
    .command('forget <hosts...>')
    .description('drop inventory records without releasing (for hosts removed by hand): ids, names or # indexes')
    .option('-y, --yes', 'do not ask (needed when stdin is not a terminal)')
    .action((keys: string[], opts: { yes?: boolean }) =>
      act(async () => {
        const records = await ctx.resolveHosts(keys);
        const list = records.map(describe).join(', ');
        if (!opts.yes) {
          if (ctx.io.stdin.isTTY !== true)
            throw new UserInputError(
              `forget drops records without releasing their hosts, so it asks first, and stdin is not a terminal: add --yes to forget ${list}.`,
            );
          const question = `Forget ${records.length} record(s) without releasing them: ${list}?\nWhat their providers made stays; \`hostbroker reap\` finds it by its tags. [y/N] `;
          if (!(await confirm(ctx, question))) return { data: [], text: 'nothing forgotten\n' };
        }
        const gone = await ctx.broker().forget(records);
        return {
          data: gone.map((r) => ({ id: r.id, name: r.name, provider: r.provider, state: r.state })),
          text: `forgot ${gone.length} record(s) without releasing them: ${gone.map(describe).join(', ') || '(none: already gone)'}\n`,
        };
      }),
    );
}
