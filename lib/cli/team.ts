/**
 * Team-mode parts of the host commands: the live view of `inventory --watch`, and
 * `inventory --store <file|etcd>`, which copies the inventory between the file of the broker
 * directory and the etcd cluster of the `inventory` settings.
 * @module
 */
import { coreOf } from '../broker/core.js';
import { UserInputError, asError } from '../errors.js';
import { EtcdInventoryStore } from '../inventory/etcd.js';
import { FileInventoryStore } from '../inventory/file.js';
import type { InventoryChange, InventoryStore } from '../inventory/store.js';
import type { CliContext, CommandResult } from './context.js';

/** One line for a change, for people. */
function changeLine(change: InventoryChange): string {
  const at = new Date().toISOString().slice(11, 19);
  if (change.kind === 'reset') return `${at} (the inventory was replaced; re-read it with \`hostbroker inventory\`)`;
  if (change.kind === 'deployment') return `${at} deployment ${change.deployment?.name ?? change.id} ${change.deployment ? 'recorded' : 'removed'}`;
  const r = change.record;
  if (!r) return `${at} ${change.id} checked in (removed)`;
  const holder = r.machine ? ` on ${r.machine}${r.pid ? ` pid ${r.pid}` : ''}` : '';
  return `${at} ${r.name} ${r.state}${r.kept ? ' (kept)' : ''}${r.hostname ? ` ${r.hostname}` : ''} ${r.provider}${holder} ${r.id}`;
}

/** Prints every change to the inventory as it happens (JSON lines with --json) until Ctrl-C. */
export async function watchInventory(ctx: CliContext): Promise<CommandResult> {
  const broker = ctx.broker();
  const json = ctx.globals.json === true;
  let count = 0;
  await ctx.interruptible(
    async (signal) => {
      ctx.io.stderr.write(`watching ${coreOf(broker).store.location} (Ctrl-C to stop)\n`);
      for await (const change of broker.watch({ signal })) {
        count++;
        ctx.io.stdout.write(json ? `${JSON.stringify(change)}\n` : `${changeLine(change)}\n`);
      }
    },
    { stopping: () => 'stopped watching', exiting: () => 'stopped watching' },
  );
  ctx.interrupted = undefined; // Ctrl-C is how a watch ends: not a failure
  ctx.io.stderr.write(`${count} change(s) seen\n`);
  // No result: with --json, stdout stays one JSON document per line (the runner prints none).
  return undefined as unknown as CommandResult;
}

/** What a migration did. */
export interface MigrationReport {
  from: string;
  to: string;
  hosts: { copied: number; skipped: string[]; failed: Array<{ id: string; error: string }> };
  deployments: { copied: number; skipped: string[] };
}

/**
 * Copies the inventory into the store named `to` (`etcd`: from the file of the broker directory
 * into the cluster of the `inventory` settings; `file`: back). Ids already in the target are not
 * overwritten but reported; the source is left as it was.
 */
export async function migrateInventory(ctx: CliContext, to: string): Promise<CommandResult> {
  if (to !== 'etcd' && to !== 'file') throw new UserInputError(`--store takes \`etcd\` or \`file\`, not \`${to}\`.`);
  const core = coreOf(ctx.broker());
  const file = new FileInventoryStore(core.directory);
  const etcd = new EtcdInventoryStore(core.settings.inventory);
  const [source, target]: InventoryStore[] = to === 'etcd' ? [file, etcd] : [etcd, file];
  try {
    const report = await copyInventory(source!, target!);
    const failed = report.hosts.failed.map((f) => `\n  ${f.id}: ${f.error}`).join('');
    const skipped = [...report.hosts.skipped, ...report.deployments.skipped];
    const text =
      `copied ${report.hosts.copied} host record(s) and ${report.deployments.copied} deployment(s) from ${report.from} to ${report.to}` +
      (skipped.length ? `; left ${skipped.length} already there as they were (${skipped.join(', ')})` : '') +
      (failed ? `; could not copy ${report.hosts.failed.length}:${failed}` : '') +
      `\nThe source is unchanged. Use the copy with \`inventory: { store: ${to} }\` in broker_settings.yaml (or BROKER_INVENTORY__STORE=${to}).\n`;
    return { data: report, text, ...(report.hosts.failed.length ? { exitCode: 7 } : {}) };
  } finally {
    await etcd.close();
  }
}

/** Copies every record and deployment `target` lacks (one record at a time: one bad one stops none). */
export async function copyInventory(source: InventoryStore, target: InventoryStore): Promise<MigrationReport> {
  const [from, there] = await Promise.all([source.snapshot(), target.snapshot()]);
  const hostIds = new Set(there.hosts.map((h) => h.id));
  const deploymentIds = new Set(there.deployments.map((d) => d.id));
  const report: MigrationReport = {
    from: source.location,
    to: target.location,
    hosts: { copied: 0, skipped: [], failed: [] },
    deployments: { copied: 0, skipped: [] },
  };
  for (const d of from.deployments) {
    if (deploymentIds.has(d.id)) report.deployments.skipped.push(d.id);
    else {
      await target.putDeployment(d);
      report.deployments.copied++;
    }
  }
  for (const h of from.hosts) {
    if (hostIds.has(h.id)) {
      report.hosts.skipped.push(h.id);
      continue;
    }
    // A worker means something only on the store whose leases it names.
    const { worker: _worker, ...record } = h;
    try {
      await target.add([record]);
      report.hosts.copied++;
    } catch (error) {
      report.hosts.failed.push({ id: h.id, error: asError(error).message });
    }
  }
  return report;
}
