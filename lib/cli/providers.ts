/**
 * Provider commands: providers (help from zod schemas, live describe), execute, reap.
 * @module
 */
import { coreOf } from '../broker/core.js';
import type { Command } from 'commander';
import type { ProviderInfo } from '../broker/index.js';
import { AbortedError, UserInputError } from '../errors.js';
import type { ArgumentDoc } from '../requests.js';
import { parseProviderOptions } from './args.js';
import type { CliContext, CommandResult } from './context.js';
import { table, yaml } from './format.js';

function argLines(args: readonly ArgumentDoc[]): string {
  if (!args.length) return '  (no arguments)\n';
  return table(
    ['  OPTION', 'TYPE', 'DEFAULT', 'DESCRIPTION'],
    args.map((a) => [
      `  --${a.name}${a.required ? ' (required)' : ''}`,
      a.type,
      a.default === undefined ? undefined : JSON.stringify(a.default),
      a.description,
    ]),
  );
}

/** The packages a provider needs, each with `(not installed: npm install …)` when missing. */
function packagesText(p: ProviderInfo): string | undefined {
  if (!p.packages.length) return undefined;
  return p.packages.map((k) => (k.installed ? k.name : `${k.name} (not installed)`)).join(', ');
}

function providerHelp(p: ProviderInfo): string {
  let out = `${p.name}: ${p.description}\n\nCheckout options (hostbroker checkout --provider ${p.name} ...):\n${argLines(p.arguments)}`;
  const actions = Object.entries(p.actions);
  if (actions.length) {
    out += `\nActions (hostbroker execute --provider ${p.name} --action <name> ...):\n`;
    for (const [name, a] of actions) out += `\n  ${name}: ${a.description}\n${argLines(a.arguments).replace(/^/gm, '  ')}`;
  }
  out += `\nInstances in settings: ${p.instances.join(', ')}\n`;
  const missing = p.packages.filter((k) => !k.installed).map((k) => k.name);
  if (p.packages.length) out += `Packages it needs: ${packagesText(p)}${missing.length ? `; install with \`npm install ${missing.join(' ')}\`` : ''}\n`;
  return out;
}

export function registerProviderCommands(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  program
    .command('providers [name]')
    .description("list providers, or show one provider's options, actions and instances")
    .option('--live [topic]', "also ask the provider's service what it offers (images, workflows, machines...)")
    .option('--instance <name>', 'settings instance for --live')
    .action((name: string | undefined, opts: { live?: string | boolean; instance?: string }) =>
      act(async () => {
        const broker = ctx.broker();
        const all = broker.providers();
        if (!name) {
          if (opts.live) throw new UserInputError('--live needs a provider name: hostbroker providers <name> --live.');
          return {
            data: all,
            text: table(
              ['PROVIDER', 'DESCRIPTION', 'PACKAGES'],
              all.map((p) => [p.name, p.description, packagesText(p)]),
            ),
          };
        }
        const info = all.find((p) => p.name === name);
        if (!info) coreOf(broker).runtime(name); // throws, listing the known providers
        const data: Record<string, unknown> = { ...info! };
        let text = providerHelp(info!);
        if (opts.live) {
          const live = await broker.describeProvider(name, typeof opts.live === 'string' ? opts.live : undefined, opts.instance);
          data.live = live;
          text += `\nLive (${name}${opts.instance ? `::${opts.instance}` : ''}):\n${Object.keys(live).length ? yaml(live) : '  (this provider has nothing to describe)\n'}`;
        }
        return { data, text };
      }),
    );

  program
    .command('execute')
    .description("run a provider action that creates no host: --provider <name> --action <name> plus the action's options")
    .requiredOption('--provider <name>', 'provider')
    .requiredOption('--action <name>', 'action (see `hostbroker providers <name>`)')
    .option('--instance <name>', 'settings instance of the provider')
    .allowUnknownOption()
    .allowExcessArguments()
    .action((opts: { provider: string; action: string; instance?: string }, cmd: Command) =>
      act(async () => {
        const broker = ctx.broker();
        const info = broker.providers().find((p) => p.name === opts.provider);
        if (!info) coreOf(broker).runtime(opts.provider); // throws, listing the known providers
        const action = info!.actions[opts.action];
        if (!action) {
          const known = Object.keys(info!.actions);
          throw new UserInputError(
            `provider \`${opts.provider}\` has no action \`${opts.action}\`; ${known.length ? `its actions: ${known.join(', ')}` : 'it has no actions'}.`,
          );
        }
        const args = parseProviderOptions(cmd.args, action.arguments, `action \`${opts.action}\` of provider \`${opts.provider}\``);
        const result = await broker.execute({ ...args, provider: opts.provider, action: opts.action, ...(opts.instance ? { instance: opts.instance } : {}) });
        return { data: result ?? null, text: result === undefined ? 'done\n' : yaml(result) };
      }),
    );

  program
    .command('reap [provider]')
    .description('release what killed processes left behind (stuck records, tagged resources without a record)')
    .action((provider: string | undefined) =>
      act(async () => {
        // reap cannot stop between records: a first signal lets it finish, then exits 130/143.
        const r = await ctx.interruptible(() => ctx.broker().reap(provider), {
          stopping: (again) => `finishing the reap under way, which does not stop half-way (${again}; records not yet reaped stay in the inventory)`,
          exiting: () => 'Records not yet reaped stay in the inventory; run `hostbroker reap` again.',
        });
        const text = `released ${r.released.length} stale record(s)${r.released.length ? `: ${r.released.map((x) => x.name).join(', ')}` : ''}; removed ${r.removed.length} orphaned resource(s)${r.removed.length ? `: ${r.removed.join(', ')}` : ''}`;
        if (ctx.interrupted) throw new AbortedError(`reap was interrupted by ${ctx.interrupted} and finished first: ${text}.`);
        return { data: r, text: `${text}\n` };
      }),
    );
}
