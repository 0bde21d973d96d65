/**
 * Host commands: checkout, checkin, inventory, extend, duplicate.
 * @module
 */
import { coreOf } from '../broker/core.js';
import { staleRecords } from '../broker/reconcile.js';
import { Option, type Command } from 'commander';
import { UserInputError } from '../errors.js';
import { applyFilter } from '../filter.js';
import { junitPassed } from '../junit.js';
import type { HostRecord } from '../records.js';
import { readArgsFile } from '../requests.js';
import { parseProxyJump } from '../ssh-config-file.js';
import { parseProviderOptions } from './args.js';
import type { CliContext, CommandResult } from './context.js';
import { hostTable, yaml } from './format.js';
import { collect, duration, positiveInt } from './options.js';
import { releaseMany } from './release.js';
import { migrateInventory, watchInventory } from './team.js';

interface CheckoutOpts {
  nick?: string;
  provider?: string;
  count?: number;
  instance?: string;
  lease?: string | number;
  timeout?: string | number;
  argsFile?: string;
  bundle?: string[];
  keepPartial?: boolean;
  jump?: string;
}

interface TargetOpts {
  all?: boolean;
  filter?: string;
}

/** Records selected by ids/names, `--all` and `--filter` (a filter alone selects too). */
async function selectTargets(ctx: CliContext, keys: string[], opts: TargetOpts, verb: string): Promise<HostRecord[]> {
  if (keys.length && opts.all) throw new UserInputError(`give host ids/names or --all, not both.`);
  let records: HostRecord[];
  if (keys.length) records = await ctx.resolveHosts(keys);
  else if (opts.all || opts.filter) records = await ctx.broker().inventory();
  else throw new UserInputError(`say which hosts to ${verb}: ids, names or # indexes from \`hostbroker inventory\`, --all, or --filter 'name<web'.`);
  return opts.filter ? applyFilter(records, opts.filter) : records;
}

export function registerHostCommands(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  program
    .command('checkout')
    .description("check hosts out: --nick, or --provider plus the provider's own options (--name value ...)")
    .option('--nick <nick>', 'a named request from settings (`nicks:`)')
    .option('--provider <name>', 'provider to ask (see `hostbroker providers`)')
    .option('--count <n>', 'how many hosts', positiveInt)
    .option('--instance <name>', 'settings instance of the provider')
    .option('--lease <duration>', 'lease length, e.g. 4h', duration)
    .option('--timeout <duration>', 'limit for each host, e.g. 10m', duration)
    .option('--args-file <file>', 'JSON or YAML file whose top-level keys become arguments')
    .option('--bundle <name>', 'bundle to apply after provisioning (repeatable)', collect)
    .option('--keep-partial', 'keep the hosts that succeeded when some fail (default: release all)')
    .option('--jump <hops>', 'reach the hosts through these jump hosts: [user@]host[:port],... (as ssh -J)')
    .allowUnknownOption()
    .allowExcessArguments()
    .addHelpText(
      'after',
      "\nProvider options are typed by the provider's schema: numbers, true/false, JSON or YAML (or a .json/.yaml file) for objects and lists.\nExample: hostbroker checkout --provider local --name web1",
    )
    .action((opts: CheckoutOpts, cmd: Command) =>
      act(async () => {
        const broker = ctx.broker();
        const provider =
          opts.provider ??
          (opts.nick ? broker.settings.nicks[opts.nick]?.provider : undefined) ??
          (opts.argsFile ? readArgsFile(opts.argsFile).provider : undefined);
        if (typeof provider !== 'string') {
          if (opts.nick)
            throw new UserInputError(
              `there is no nick \`${opts.nick}\`; known nicks: ${Object.keys(broker.settings.nicks).join(', ') || 'none (define them under `nicks:` in broker_settings.yaml)'}.`,
            );
          throw new UserInputError('checkout needs --provider <name> or --nick <nick>; `hostbroker providers` lists the providers.');
        }
        const info = broker.providers().find((p) => p.name === provider);
        if (!info) coreOf(broker).runtime(provider); // throws, listing the known providers
        const args = parseProviderOptions(cmd.args, info!.arguments, `provider \`${provider}\``);
        const request: Record<string, unknown> = { ...args };
        if (opts.nick) request.nick = opts.nick;
        if (opts.provider) request.provider = opts.provider;
        else if (!opts.nick) request.provider = provider;
        if (opts.count !== undefined) request.count = opts.count;
        if (opts.instance) request.instance = opts.instance;
        if (opts.lease !== undefined) request.lease = opts.lease;
        if (opts.timeout !== undefined) request.timeout = opts.timeout;
        if (opts.argsFile) request.argsFile = opts.argsFile;
        if (opts.bundle) request.bundles = opts.bundle;
        if (opts.keepPartial) request.onPartialFailure = 'keep';
        if (opts.jump) request.jump = parseProxyJump(opts.jump, broker.settings.ssh.sshConfig, (m) => ctx.io.stderr.write(`hostbroker: ${m}\n`));
        const result = await ctx.interruptible((signal) => broker.checkout({ ...request, signal } as Parameters<typeof broker.checkout>[0]));
        const hosts = Symbol.iterator in Object(result) ? [...(result as Iterable<{ record: HostRecord }>)] : [result as { record: HostRecord }];
        const records = hosts.map((h) => h.record);
        return { data: records, text: hostTable(records, false) };
      }),
    );

  program
    .command('checkin [hosts...]')
    .description('check hosts in (release them): ids, names or # indexes, --all, or --filter')
    .option('--all', 'every host in the inventory')
    .option('--filter <filter>', "only hosts matching, e.g. 'name<web,provider=local'")
    .option('--if-tests-passed <junit.xml>', 'only when this JUnit report has no failures; else keep the hosts')
    .option('--concurrency <n>', 'hosts released at once (default 16)', positiveInt)
    .option('--pool', 'release every host of yours waiting in the warm-reuse pool')
    .option('--orphans', "only orphans: hosts whose worker is gone (a team's etcd inventory), unfinished checkouts of dead processes here")
    .action((keys: string[], opts: TargetOpts & { ifTestsPassed?: string; concurrency?: number; pool?: boolean; orphans?: boolean }) =>
      act(async () => {
        if (opts.pool && !keys.length && !opts.all && !opts.filter) {
          const released = await ctx.broker().emptyPool();
          return {
            data: released.map((r) => ({ id: r.id, name: r.name })),
            text: released.length
              ? `released ${released.length} pooled host(s): ${released.map((r) => r.name).join(', ')}\n`
              : 'the warm-reuse pool is empty\n',
          };
        }
        let records = await selectTargets(ctx, keys, opts, 'check in');
        if (opts.orphans) records = await staleRecords(coreOf(ctx.broker()), records);
        if (!records.length) return { data: [], text: 'no hosts matched; nothing checked in\n' };
        if (opts.ifTestsPassed) {
          const verdict = await junitPassed(opts.ifTestsPassed);
          if (!verdict.passed) {
            await ctx.broker().checkin(records, { ifTestsPassed: opts.ifTestsPassed }); // keeps them, saying why
            return {
              data: [],
              text: `tests did not pass (${verdict.summary}): kept ${records.length} host(s) for inspection: ${records.map((r) => r.name).join(', ')}\n`,
            };
          }
        }
        // Released here rather than by one broker.checkin, so a first Ctrl-C can stop starting more.
        await releaseMany(ctx, records, { concurrency: opts.concurrency ?? 16, finish: (ids) => `hostbroker checkin ${ids.join(' ')}` });
        return {
          data: records.map((r) => ({ id: r.id, name: r.name })),
          text: `checked in ${records.length} host(s): ${records.map((r) => r.name).join(', ')}\n`,
        };
      }),
    );

  program
    .command('inventory')
    .description('list the hosts in the inventory')
    .option('--filter <filter>', "only hosts matching, e.g. 'provider=local'")
    .addOption(new Option('--sync [provider]', 'ask providers first (all, or `name` / `name::instance`)'))
    .option('--details', 'every field of every record, as YAML')
    .option('--watch', 'then print every change as it happens (anyone, any machine) until Ctrl-C')
    .option('--store <file|etcd>', 'copy this inventory into the etcd cluster of the `inventory` settings (`etcd`) or back (`file`)')
    .action((opts: { filter?: string; sync?: string | boolean; details?: boolean; watch?: boolean; store?: string }) =>
      act(async () => {
        if (opts.store) return migrateInventory(ctx, opts.store);
        const broker = ctx.broker();
        if (opts.sync) await broker.sync(opts.sync === true ? undefined : opts.sync);
        const all = await broker.inventory();
        const records = opts.filter ? applyFilter(all, opts.filter) : all;
        const indexes = records.map((r) => all.indexOf(r));
        if (opts.watch) {
          if (!ctx.globals.json) ctx.io.stdout.write(opts.details ? yaml(records) : hostTable(records, indexes));
          return watchInventory(ctx);
        }
        return { data: records, text: opts.details ? yaml(records) : hostTable(records, indexes) };
      }),
    );

  program
    .command('extend [hosts...]')
    .description('extend the lease of hosts (providers with leases)')
    .option('--all', 'every host in the inventory')
    .option('--filter <filter>', 'only hosts matching')
    .option('--lease <duration>', 'new lease from now, e.g. 4h (default: settings checkout.lease)', duration)
    .action((keys: string[], opts: TargetOpts & { lease?: string | number }) =>
      act(async () => {
        const records = await selectTargets(ctx, keys, opts, 'extend');
        await ctx.broker().extend(records, opts.lease !== undefined ? { lease: opts.lease } : {});
        const after = await ctx.resolveHosts(records.map((r) => r.id));
        return { data: after, text: hostTable(after, false) };
      }),
    );

  program
    .command('duplicate [hosts...]')
    .description('check out new hosts with the same recipe as existing ones')
    .option('--count <n>', 'copies of each', positiveInt)
    .option('--all', 'every host in the inventory')
    .option('--filter <filter>', 'only hosts matching')
    .action((keys: string[], opts: TargetOpts & { count?: number }) =>
      act(async () => {
        const records = await selectTargets(ctx, keys, opts, 'duplicate');
        const group = await ctx.interruptible((signal) =>
          ctx.broker().duplicate(records, { signal, ...(opts.count !== undefined ? { count: opts.count } : {}) }),
        );
        const made = group.map((h) => h.record);
        return { data: made, text: hostTable(made, false) };
      }),
    );
}
