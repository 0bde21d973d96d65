/**
 * Scenario actions on hosts: checkout, checkin, run (Broker's `ssh`), upload, download, apply.
 * Actions on several hosts run them in parallel unless the step says `parallel: false`; their
 * output is one value for one host, else a mapping of host name to value.
 * @module
 */
import { mkdir, stat } from 'node:fs/promises';
import { isAbsolute, resolve, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Host } from '../../../hosts/host.js';
import { HostGroup } from '../../../hosts/host-group.js';
import { CommandError, UserInputError } from '../../errors.js';
import type { CheckoutRequest } from '../../broker/types.js';
import { toMs } from '../../settings.js';
import { liveHosts, selectRecords } from '../select.js';
import type { ActionCall } from '../state.js';
import { plain, render } from '../template.js';

/** Actions whose arguments are rendered per host (with `host` in the scope), not once per step. */
export const HOST_SCOPED: ReadonlySet<string> = new Set(['run', 'upload', 'download', 'apply']);

/** A local path in a scenario: relative to the scenario file's folder. */
export function localPath(call: ActionCall, path: unknown): string {
  if (typeof path !== 'string' || !path) throw new UserInputError(`step "${call.where}": a path must be a non-empty string, not ${JSON.stringify(path)}.`);
  return isAbsolute(path) ? path : resolve(dirname(call.state.file), path);
}

/** Runs `fn` for each selected host (with `host` in the scope for its arguments). */
async function perHost(call: ActionCall, fn: (host: Host, args: Record<string, unknown>) => Promise<unknown>): Promise<unknown> {
  const records = await selectRecords(call.state, call.step.with!, call.scope, call.where);
  const hosts = liveHosts(call.state, records);
  const one = async (host: Host): Promise<[string, unknown]> => {
    const args = render(call.step.arguments, { ...call.scope, host: host.record }, call.where) as Record<string, unknown>;
    return [host.name, await fn(host, args)];
  };
  const pairs: [string, unknown][] = [];
  if (call.step.parallel) pairs.push(...(await Promise.all(hosts.map(one))));
  else for (const host of hosts) pairs.push(await one(host));
  return pairs.length === 1 ? pairs[0]![1] : Object.fromEntries(pairs);
}

/** `checkout`: arguments are a checkout request (`provider`, `nick`, `count`, provider arguments); `keep: true` keeps the hosts after the scenario. */
export async function checkout(call: ActionCall): Promise<unknown> {
  const { keep, ...request } = call.args;
  const made = await call.state.broker.checkout({ ...(request as unknown as CheckoutRequest), signal: call.signal });
  const hosts = made instanceof HostGroup ? [...made] : [made as Host];
  for (const host of hosts) {
    call.state.hosts.set(host.id, host);
    if (keep === true) call.state.keep.add(host.id);
  }
  return hosts.map((h) => plain(h.record));
}

/** `checkin`: releases the selected hosts (and forgets them as scenario hosts). */
export async function checkin(call: ActionCall): Promise<unknown> {
  const records = await selectRecords(call.state, call.step.with!, call.scope, call.where);
  await call.state.broker.checkin(liveHosts(call.state, records), { signal: call.signal });
  for (const r of records) call.state.hosts.delete(r.id);
  return true;
}

/** `run`: a command on each host; a Result each. `check: true` fails the step on a non-zero status. */
export function run(call: ActionCall): Promise<unknown> {
  return perHost(call, async (host, args) => {
    if (typeof args.command !== 'string') throw new UserInputError(`step "${call.where}": \`command\` must be a string.`);
    // A number is seconds, as in Broker's scenarios; a string is a duration (`90s`, `5m`).
    const timeout = args.timeout === undefined ? undefined : typeof args.timeout === 'number' ? args.timeout * 1000 : toMs(args.timeout as string);
    const result = await host.execute(args.command, {
      signal: call.signal,
      ...(timeout ? { timeout } : {}),
      ...(args.env ? { env: args.env as Record<string, string> } : {}),
      ...(typeof args.cwd === 'string' ? { cwd: args.cwd } : {}),
    });
    if (args.check === true && result.status !== 0) {
      throw new CommandError(`step "${call.where}": \`${result.command}\` exited ${result.status} on ${host.name}.`, result);
    }
    return plain(result);
  });
}

/** `upload`: a local file or directory (`source`) to a remote path (`destination`). */
export function upload(call: ActionCall): Promise<unknown> {
  return perHost(call, async (host, args) => {
    const source = localPath(call, args.source);
    const destination = String(args.destination);
    const info = await stat(source).catch(() => undefined);
    if (!info) throw new UserInputError(`step "${call.where}": ${source} does not exist; give a local file or directory as \`source\`.`);
    if (info.isDirectory()) await host.session.upload(source, destination);
    else await host.session.write({ localPath: source }, destination);
    return { source, destination, host: host.name };
  });
}

/** `download`: a remote file (or, with `directory: true`, a directory) to a local path. */
export function download(call: ActionCall): Promise<unknown> {
  return perHost(call, async (host, args) => {
    const destination = localPath(call, args.destination);
    const source = String(args.source);
    if (args.directory === true) await host.session.download(source, destination);
    else {
      await mkdir(dirname(destination), { recursive: true });
      await host.session.downloadFile(source, destination);
    }
    return { source, destination, host: host.name };
  });
}

/** The site plan an `apply` step names: a module's export, or whiteprints by name from the prefabs. */
async function planOf(call: ActionCall, args: Record<string, unknown>): Promise<import('../../../hosts/config/index.js').SitePlan> {
  const config = await import('../../../hosts/config/index.js');
  if (args.plan !== undefined) {
    const module = (await import(pathToFileURL(localPath(call, args.plan)).href)) as Record<string, unknown>;
    const plan = module[typeof args.export === 'string' ? args.export : 'default'];
    if (!(plan instanceof config.SitePlan)) {
      throw new UserInputError(`step "${call.where}": ${String(args.plan)} does not export a SitePlan as \`${String(args.export ?? 'default')}\`.`);
    }
    return plan;
  }
  if (!Array.isArray(args.steps)) throw new UserInputError(`step "${call.where}": \`steps\` must be a list of { whiteprint, config, alias }.`);
  const known = config as unknown as Record<string, unknown>;
  const steps = args.steps.map((s: { whiteprint?: unknown; config?: unknown; alias?: unknown }, i: number) => {
    const whiteprint = typeof s.whiteprint === 'string' ? known[s.whiteprint] : undefined;
    if (typeof whiteprint !== 'function' || !(whiteprint.prototype instanceof config.Whiteprint)) {
      throw new UserInputError(
        `step "${call.where}": steps[${i}].whiteprint ${JSON.stringify(s.whiteprint)} is not a prefab; use one of Apt, Pip3, Folder, FileFromString, FileFromPath, Symlink, LineInFile, FileExistsValidator, or \`plan\` for your own.`,
      );
    }
    return { whiteprint, ...(s.config ? { config: s.config } : {}), ...(typeof s.alias === 'string' ? { alias: s.alias } : {}) };
  });
  return new config.SitePlan(steps as never);
}

/** `apply`: a site plan in a mode on each host (`validate: true` checks instead); the report each. */
export function apply(call: ActionCall): Promise<unknown> {
  return perHost(call, async (host, args) => {
    const plan = await planOf(call, args);
    const mode = String(args.mode);
    const cfg = args.config as Record<string, Record<string, unknown>> | undefined;
    const report = args.validate === true ? await host.validate(plan, mode, cfg) : await host.apply(plan, mode, cfg);
    if (!report.ok) report.throwIfFailed();
    return report.toJSON();
  });
}
