/**
 * The example provider's implementation, loaded on first use. Each host is `<root>/<record id>/`
 * with a tag file (`.hostbroker.json`: record id, broker id, lease) written before anything else,
 * so a process killed mid-checkout leaves a directory that discover() lists and reap removes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type DiscoveredHost, type ProviderContext, ProviderError, type RemoteSignal, type Transport, implementProvider } from 'hostbroker';
import { type WorkdirInstance, workdir } from './definition.js';

const TAG_FILE = '.hostbroker.json';

/** What the tag file of a host directory holds. */
interface Tags {
  id: string;
  name: string;
  brokerId: string;
  owner: string;
  createdAt: string;
  leaseExpires?: string;
}

function folderOf(ctx: ProviderContext<WorkdirInstance>, recordId: string): string {
  return join(resolve(ctx.instanceSettings.root), recordId);
}

async function readTags(dir: string): Promise<Tags | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, TAG_FILE), 'utf8')) as Tags;
  } catch {
    return undefined;
  }
}

/** The host directories of this broker under root, as discover() reports them. */
async function hostsOf(ctx: ProviderContext<WorkdirInstance>): Promise<DiscoveredHost[]> {
  const root = resolve(ctx.instanceSettings.root);
  const found: DiscoveredHost[] = [];
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    const tags = await readTags(join(root, entry));
    if (!tags || tags.brokerId !== ctx.brokerId) continue;
    found.push({ ...tags, hostname: tags.name, providerId: tags.id, connection: { kind: 'provider' }, data: { folder: join(root, entry) } });
  }
  return found;
}

export default implementProvider(workdir, {
  async checkout(args, { record }, ctx) {
    // Honour the signal: the Broker aborts it on timeout, on another host's failure, on Ctrl-C.
    ctx.signal.throwIfAborted();
    const dir = folderOf(ctx, record.id);
    await mkdir(dir, { recursive: true });
    const tags: Tags = {
      id: record.id,
      name: record.name,
      brokerId: record.brokerId,
      owner: record.owner,
      createdAt: record.createdAt,
      ...(record.leaseExpires ? { leaseExpires: record.leaseExpires } : {}),
    };
    await writeFile(join(dir, TAG_FILE), JSON.stringify(tags));
    for (const [path, content] of Object.entries(args.files ?? {})) {
      const target = resolve(dir, path);
      if (!target.startsWith(`${dir}/`)) throw new ProviderError('workdir', `file path ${path} leaves the host directory; give a relative path inside it.`);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content);
    }
    ctx.signal.throwIfAborted();
    return { hostname: record.name, providerId: record.id, connection: { kind: 'provider' }, data: { folder: dir } };
  },

  // Idempotent, and works for a record still `provisioning`: the directory is named by the record id.
  async release(record, ctx) {
    await rm(folderOf(ctx, record.id), { recursive: true, force: true });
  },

  async extend(record, leaseExpires, ctx) {
    const dir = folderOf(ctx, record.id);
    const tags = await readTags(dir);
    if (!tags) throw new ProviderError('workdir', `${record.name} has no directory at ${dir} any more; check it in to forget it.`);
    await writeFile(join(dir, TAG_FILE), JSON.stringify({ ...tags, leaseExpires }));
  },

  // Everything of this broker, with its tags: the Broker decides what to sync and what to reap.
  discover: hostsOf,

  // Hosts with `connection.kind: 'provider'` are reached through the provider's own transport.
  transport(record, ctx) {
    return shellIn(folderOf(ctx, record.id), record.name);
  },

  actions: {
    async list(_args, ctx) {
      const hosts = await hostsOf(ctx);
      return hosts.map((h) => ({ name: h.name, record: h.id, leaseExpires: h.leaseExpires ?? null }));
    },
  },
});

/** A transport that runs commands with /bin/sh in `dir` (its HOME too). */
function shellIn(dir: string, name: string): Transport {
  const running = new Set<ChildProcess>();
  return {
    label: `${name} (${dir})`,
    async spawn(command) {
      const child = spawn('/bin/sh', ['-c', command], { cwd: dir, env: { ...process.env, HOME: dir }, stdio: 'pipe' });
      // Fails here (not later) when the directory is gone.
      await once(child, 'spawn');
      running.add(child);
      const exit = new Promise<{ status: number | null; signal?: string }>((done) =>
        child.once('close', (status, signal) => {
          running.delete(child);
          done(signal ? { status, signal } : { status });
        }),
      );
      return {
        stdin: child.stdin!,
        stdout: child.stdout!,
        stderr: child.stderr!,
        exit,
        kill: (signal: RemoteSignal = 'KILL') => void child.kill(`SIG${signal}`),
      };
    },
    async close() {
      for (const child of running) child.kill('SIGKILL');
    },
  };
}
