/**
 * Scenario actions that are not about chosen hosts: execute (provider actions), up and destroy
 * (topologies), providers, inventory, output, exit and run_scenarios.
 * @module
 */
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { stringify } from 'yaml';
import { UserInputError } from '../../errors.js';
import type { ExecuteRequest } from '../../broker/types.js';
import type { ActionCall } from '../state.js';
import { plain } from '../template.js';
import { localPath } from './hosts.js';

/** Thrown by the `exit` action: ends the scenario with this code (its hosts are still checked in). */
export class ScenarioExit extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** `execute`: a provider action that makes no host (`provider`, `action`, its arguments). */
export async function execute(call: ActionCall): Promise<unknown> {
  return plain(await call.state.broker.execute(call.args as unknown as ExecuteRequest));
}

/** `up`: provisions a topology (`metadata`: a file or an object); `keep: true` leaves it after the scenario. */
export async function up(call: ActionCall): Promise<unknown> {
  const { metadata, keep, ...options } = call.args;
  const source = typeof metadata === 'string' && !metadata.includes('\n') ? localPath(call, metadata) : metadata;
  const deployment = await call.state.broker.up(source as never, { ...(options as object), signal: call.signal });
  call.state.deployments.set(deployment.id, { deployment, keep: keep === true });
  return plain(deployment.toJSON());
}

/** `destroy`: a deployment by id or name (`deployment`), or every one this scenario made. */
export async function destroy(call: ActionCall): Promise<unknown> {
  const key = call.args.deployment;
  const own = [...call.state.deployments.values()].map((d) => d.deployment);
  if (key === undefined) {
    await Promise.all(own.map((d) => d.destroy()));
    call.state.deployments.clear();
    return own.map((d) => d.id);
  }
  const deployment = own.find((d) => d.id === key || d.name === key) ?? (await call.state.broker.deployment(String(key)));
  await deployment.destroy();
  call.state.deployments.delete(deployment.id);
  return [deployment.id];
}

/** `providers`: every provider; one provider's arguments and actions; or its live help for a `query`. */
export async function providers(call: ActionCall): Promise<unknown> {
  const { provider, query, instance } = call.args as { provider?: string; query?: string; instance?: string };
  const all = call.state.broker.providers();
  if (provider === undefined) return plain(all);
  const info = all.find((p) => p.name === provider);
  if (!info) throw new UserInputError(`step "${call.where}": no provider \`${provider}\`; known: ${all.map((p) => p.name).join(', ')}.`);
  if (query === undefined) return plain(info);
  return plain(await call.state.broker.describeProvider(provider, query, instance));
}

/** `inventory`: records, optionally synced first (`sync: true` or a provider) and filtered. */
export async function inventory(call: ActionCall): Promise<unknown> {
  const { filter, sync } = call.args as { filter?: string; sync?: boolean | string };
  return plain(await call.state.broker.inventory({ ...(filter ? { filter } : {}), ...(sync ? { sync } : {}) }));
}

/** How `output` writes a value: text as is; JSON or YAML by the file's extension; else YAML. */
function formatted(content: unknown, destination: string): string {
  const ext = extname(destination).toLowerCase();
  if (ext === '.json') return `${JSON.stringify(content, null, 2)}\n`;
  if (typeof content === 'string') return content.endsWith('\n') ? content : `${content}\n`;
  return stringify(content);
}

/** `output`: `content` to stdout (default), stderr or a file (`mode: append` adds to it). */
export async function output(call: ActionCall): Promise<unknown> {
  const { content, destination = 'stdout', mode = 'overwrite' } = call.args as { content: unknown; destination?: string; mode?: string };
  if (mode !== 'overwrite' && mode !== 'append')
    throw new UserInputError(`step "${call.where}": \`mode\` is overwrite or append, not ${JSON.stringify(mode)}.`);
  const text = formatted(content, destination);
  if (destination === 'stdout' || destination === 'stderr') {
    call.state[destination].write(text);
  } else {
    const path = localPath(call, destination);
    await mkdir(dirname(path), { recursive: true });
    await (mode === 'append' ? appendFile(path, text) : writeFile(path, text));
  }
  return content;
}

/** `exit`: ends the scenario with `return_code` (default 0) and a `message`. */
export async function exit(call: ActionCall): Promise<never> {
  const code = call.args.return_code ?? 0;
  if (typeof code !== 'number' || !Number.isInteger(code) || code < 0 || code > 255) {
    throw new UserInputError(`step "${call.where}": \`return_code\` must be a whole number from 0 to 255, not ${JSON.stringify(code)}.`);
  }
  throw new ScenarioExit(code, typeof call.args.message === 'string' ? call.args.message : `exit ${code}`);
}

/** `run_scenarios`: other scenario files in turn (`paths`; `vars` for all); `{path, status, exitCode}` each. */
export async function runScenarios(call: ActionCall): Promise<unknown> {
  const { paths, vars = {} } = call.args as { paths: unknown; vars?: Record<string, unknown> };
  const list = Array.isArray(paths) ? paths : [paths];
  const results: { path: string; status: string; exitCode: number; success: boolean }[] = [];
  for (const path of list) {
    const file = localPath(call, path);
    const { exitCode, status } = await call.state.runNested(file, vars);
    results.push({ path: file, status, exitCode, success: exitCode === 0 });
    if (exitCode !== 0) {
      throw Object.assign(new UserInputError(`step "${call.where}": scenario ${file} ended ${status} (exit ${exitCode}).`), { output: results });
    }
  }
  return results;
}
