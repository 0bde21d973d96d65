/**
 * Topology commands: up, destroy, output, deployments.
 * @module
 */
import { coreOf } from '../broker/core.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import type { Deployment } from '../topology/deployment.js';
import type { CliContext, CommandResult } from './context.js';
import { table } from './format.js';
import { releaseMany } from './release.js';

interface OutputOpts {
  ansibleInventory?: string;
  sshConfig?: string;
  /** A file, or `true` for JSON on stdout (the global `--json`). */
  json?: string | boolean;
}

/** Writes the outputs asked for; returns the paths written. */
function writeOutputs(d: Deployment, opts: OutputOpts): Record<string, string> {
  const written: Record<string, string> = {};
  const put = (path: string, text: string, key: string): void => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text, { mode: 0o600 });
    written[key] = path;
  };
  if (opts.ansibleInventory) put(opts.ansibleInventory, d.ansibleInventory(), 'ansibleInventory');
  if (opts.sshConfig) put(opts.sshConfig, d.sshConfig(), 'sshConfig');
  if (typeof opts.json === 'string') put(opts.json, `${JSON.stringify(d.toJSON(), null, 2)}\n`, 'json');
  return written;
}

function summary(d: Deployment): string {
  return (
    `deployment ${d.name} (${d.id})\n` +
    table(
      ['HOST', 'ROLE', 'GROUPS', 'PROVIDER', 'ADDRESS', 'ID'],
      d.hosts.map((h) => {
        const e = d.entryOf(h);
        const c = h.record.connection;
        return [e.fqdn, e.role, e.groups.join(','), h.provider, c?.kind === 'ssh' ? `${c.username}@${c.host}:${c.port}` : h.hostname, h.id];
      }),
    )
  );
}

function addOutputOptions(cmd: Command): Command {
  return cmd
    .option('--ansible-inventory <file>', 'write the Ansible inventory (YAML) here')
    .option('--ssh-config <file>', 'write an OpenSSH config snippet here (ssh -F <file> <host>)')
    .option('--json [file]', 'write the deployment as JSON to this file (without a file: print JSON)');
}

export function registerTopologyCommands(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  addOutputOptions(
    program
      .command('up <metadata>')
      .description('provision every host of a metadata file (mrack format) on its providers, at once')
      .option('--provisioning <file>', 'provisioning config (default: settings `provisioning:`)')
      .option('--provider <name>', 'provider of hosts that name none anywhere else')
      .option('--name <name>', 'deployment name (default: the metadata `name`, else the file name)'),
  ).action((metadata: string, opts: OutputOpts & { provisioning?: string; provider?: string; name?: string }) =>
    act(async () => {
      ctx.progress.deployment = true;
      const d = await ctx.interruptible((signal) =>
        ctx.broker().up(metadata, {
          ...(opts.provisioning ? { provisioning: opts.provisioning } : {}),
          ...(opts.provider ? { provider: opts.provider } : {}),
          ...(opts.name ? { name: opts.name } : {}),
          onProgress: ctx.progress.onUp,
          signal,
        }),
      );
      const written = writeOutputs(d, opts);
      return {
        data: { ...d.toJSON(), outputs: written },
        text:
          summary(d) +
          Object.entries(written)
            .map(([k, v]) => `wrote ${k}: ${v}\n`)
            .join(''),
      };
    }),
  );

  program
    .command('destroy [deployment]')
    .description('release every host of a deployment (id or name; the only one when omitted)')
    .action((key: string | undefined) =>
      act(async () => {
        const d = await ctx.broker().deployment(key);
        const names = d.hosts.map((h) => d.entryOf(h).fqdn);
        // Host by host, so a first Ctrl-C finishes the releases under way and starts no more;
        // destroy() then forgets the deployment (and checks in any record not among its hosts).
        await releaseMany(ctx, d.hosts, { concurrency: 16, finish: () => `hostbroker destroy ${d.id}`, afterAll: () => d.destroy() });
        return { data: { id: d.id, name: d.name, destroyed: names }, text: `destroyed deployment ${d.name} (${d.id}): ${names.length} host(s)\n` };
      }),
    );

  addOutputOptions(
    program.command('output [deployment]').description("write a deployment's outputs to files (with no file option: the Ansible inventory to stdout)"),
  ).action((key: string | undefined, opts: OutputOpts) =>
    act(async () => {
      const d = await ctx.broker().deployment(key);
      const written = writeOutputs(d, opts);
      if (!Object.keys(written).length) return { data: d.toJSON(), text: d.ansibleInventory() };
      return {
        data: { ...d.toJSON(), outputs: written },
        text: Object.entries(written)
          .map(([k, v]) => `wrote ${k}: ${v}\n`)
          .join(''),
      };
    }),
  );

  program
    .command('deployments')
    .description('list deployments made by `up`')
    .action(() =>
      act(async () => {
        const data = await coreOf(ctx.broker()).store.snapshot();
        const rows = data.deployments.map((d) => [
          d.name,
          d.id,
          Object.keys(d.hosts).length,
          data.hosts.filter((h) => h.deployment === d.id).length,
          d.owner,
          d.createdAt,
        ]);
        return {
          data: data.deployments.map(({ metadata: _m, ...rest }) => rest),
          text: rows.length ? table(['NAME', 'ID', 'HOSTS', 'IN INVENTORY', 'OWNER', 'CREATED'], rows) : 'no deployments\n',
        };
      }),
    );
}
