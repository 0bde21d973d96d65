/**
 * The `local` provider's implementation. Each host is a folder `<root>/<record id>/` holding a
 * home directory, a generated host key and user key, and a detached SSH server process.
 * Everything about a host lives in its folder (`meta.json` carries the tags), so sync and reap
 * find hosts that a killed process left behind.
 * @module
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ProviderError } from '../../lib/errors.js';
import { isProcessAlive } from '../../lib/identity.js';
import { type DiscoveredHost, type ProviderContext, implementProvider } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { abortedBeforeStart, sleep } from '../../lib/concurrency.js';
import { type LocalInstance, local } from './definition.js';
import { generateEd25519 } from '../../lib/ssh-keys.js';
import { pinnedKey } from '../../lib/known-hosts.js';
import type { LocalServerConfig } from './server.js';
import { endProcesses, markedProcesses } from './processes.js';

/** What `meta.json` in a host folder holds (the local provider's tags). */
interface LocalMeta {
  id: string;
  name: string;
  owner: string;
  brokerId: string;
  createdAt: string;
  leaseExpires?: string;
  port: number;
  pid: number;
  username: string;
  recipe: HostRecord['recipe'];
}

function rootOf(ctx: ProviderContext<LocalInstance>): string {
  return resolve(ctx.instanceSettings.root ?? join(ctx.directory, 'local-hosts'));
}

/** Command that starts the server script: the built file, or from source a bundle made once. */
async function serverCommand(): Promise<string[]> {
  const here = fileURLToPath(import.meta.url);
  if (!here.endsWith('.ts')) return [process.execPath, join(dirname(here), 'server.js')];
  try {
    bundled ??= bundleServer(dirname(here));
    return [process.execPath, await bundled];
  } catch {
    // No esbuild: compile on every start with tsx (about 1 s of CPU per host).
    const tsx = createRequire(import.meta.url).resolve('tsx');
    return [process.execPath, '--import', pathToFileURL(tsx).href, join(dirname(here), 'server.ts')];
  }
}

let bundled: Promise<string> | undefined;

/**
 * Running from TypeScript sources (tests, tsx): bundle server.ts with esbuild (which tsx brings)
 * into node_modules/.cache once per source version, so each host's server starts as plain Node.
 * The version is the content of every .ts file in this folder (the server imports only these
 * and ssh2), so a new or changed module is always picked up, whatever its mtime.
 */
async function bundleServer(sourceDir: string): Promise<string> {
  const esbuildPath = createRequire(import.meta.url).resolve('esbuild');
  const esbuild = (await import(pathToFileURL(esbuildPath).href)) as typeof import('esbuild');
  const sources = (await readdir(sourceDir)).filter((f) => f.endsWith('.ts')).sort();
  const hash = createHash('sha256').update(esbuild.version);
  for (const f of sources) hash.update(`\0${f}\0`).update(await readFile(join(sourceDir, f)));
  const key = hash.digest('hex').slice(0, 16);
  const nodeModules = esbuildPath.slice(0, esbuildPath.lastIndexOf('/node_modules/') + '/node_modules'.length);
  const out = join(nodeModules, '.cache', 'hostbroker', `local-server-${key}.mjs`);
  if (await stat(out).catch(() => undefined)) return out;
  const tmp = `${out}.${process.pid}.tmp.mjs`;
  await esbuild.build({
    entryPoints: [join(sourceDir, 'server.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: tmp,
    external: ['ssh2'],
    logLevel: 'silent',
  });
  await rename(tmp, out);
  return out;
}

/** Makes the host key (its public half pins the host: nothing is trusted on first use) and the user key. */
async function generateKeys(dir: string): Promise<{ privateKeyPath: string; hostPublicKey: string }> {
  const host = await generateEd25519();
  const user = await generateEd25519();
  await writeFile(join(dir, 'host_key'), host.private, { mode: 0o600 });
  await writeFile(join(dir, 'host_key.pub'), `${host.public}\n`, { mode: 0o644 });
  await writeFile(join(dir, 'id_ed25519'), user.private, { mode: 0o600 });
  await writeFile(join(dir, 'id_ed25519.pub'), `${user.public}\n`, { mode: 0o644 });
  return { privateKeyPath: join(dir, 'id_ed25519'), hostPublicKey: host.public };
}

/** The pinned host key of a host folder, for sync (folders made before it was kept have none). */
async function hostKeyOf(dir: string): Promise<{ hostKey: string; hostPublicKey: string } | Record<string, never>> {
  const line = await readFile(join(dir, 'host_key.pub'), 'utf8').catch(() => '');
  return line.trim() ? pinnedKey(line) : {};
}

/** Starts the server detached and waits for the port it listens on. */
async function startServer(dir: string, configPath: string, signal: AbortSignal): Promise<{ pid: number; port: number }> {
  const [cmd, ...argv] = await serverCommand();
  const log = openSync(join(dir, 'server.log'), 'a', 0o600);
  const child = spawn(cmd!, [...argv, configPath], { detached: true, stdio: ['ignore', 'pipe', log], cwd: dir });
  closeSync(log);
  // A failed spawn (EAGAIN, EMFILE) also emits 'error' (no 'exit'): unheard, it would crash the
  // whole process instead of failing this host with the error below.
  child.on('error', () => undefined);
  if (child.pid === undefined)
    throw new ProviderError('local', 'could not start the SSH server process (the system refused a new process; see ulimit -u and free memory).');
  let timer: NodeJS.Timeout | undefined;
  let onAbort = (): void => undefined;
  try {
    // Listening before the pid file is written, so an early exit is not missed.
    const listening = new Promise<number>((resolvePort, reject) => {
      let out = '';
      timer = setTimeout(() => reject(new ProviderError('local', `the SSH server did not start within 20 s; see ${join(dir, 'server.log')}.`)), 20_000);
      onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new ProviderError('local', 'checkout aborted'));
      child.stdout!.on('data', (d: Buffer) => {
        out += String(d);
        const m = /listening (\d+)\n/.exec(out); // the whole line, not a port cut short
        if (m) resolvePort(Number(m[1]));
      });
      child.on('exit', (code) => {
        reject(new ProviderError('local', `the SSH server exited (${code}) before listening: ${tailOf(join(dir, 'server.log'))}`));
      });
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    listening.catch(() => undefined); // awaited below, after the pid file
    await writeFile(join(dir, 'server.pid'), String(child.pid));
    const port = await listening;
    return { pid: child.pid, port };
  } finally {
    // Every way out (port, exit, timeout, abort, a failed pid file write) lets go of the signal.
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    child.stdout!.destroy();
    child.unref();
  }
}

/** What a server that died wrote: its error line (Node prints the stack after it), else the last lines. */
function tailOf(path: string): string {
  let lines: string[];
  try {
    lines = readFileSync(path, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  } catch {
    return '(no log)';
  }
  const error = lines.find((l) => /^\w*(Error|Exception)\b/.test(l));
  return error ?? (lines.slice(-3).join(' | ') || '(empty log)');
}

/** Stops the server of a host folder (only if the pid is really ours) and removes the folder. */
async function destroy(dir: string): Promise<void> {
  const pid = Number(await readFile(join(dir, 'server.pid'), 'utf8').catch(() => ''));
  const pids = new Set(pid > 0 ? [pid] : []);
  // A checkout killed between spawning the server and writing server.pid leaves a server no
  // pid file names: find it by the config path in its command line.
  for (const found of await serversByCommandLine(dir)) pids.add(found);
  for (const pid of pids) await stopServer(pid, dir);
  // The server ends its commands' processes when it stops; these are what it could not (it was
  // SIGKILLed or crashed, or a process left its group): found by the marker in their environment.
  await endProcesses(() => markedProcesses(dir), 1000);
  await rm(dir, { recursive: true, force: true });
}

/** Pids of processes whose command line names this host folder's server config (Linux /proc). */
async function serversByCommandLine(dir: string): Promise<number[]> {
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const config = join(dir, 'server.json');
  const out: number[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const cmdline = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(config)) out.push(Number(e));
  }
  return out;
}

async function stopServer(pid: number, dir: string): Promise<void> {
  if (pid > 0 && isProcessAlive(pid) && (await isOurServer(pid, dir))) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone already
    }
    // The server gives its commands 1 s to end after SIGTERM before it KILLs them and exits.
    for (let i = 0; i < 120 && isProcessAlive(pid); i++) await sleep(25);
    if (isProcessAlive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}

async function isOurServer(pid: number, dir: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  // Without /proc (macOS), trust the pid file: it is removed with the folder.
  return cmdline === undefined ? true : cmdline.includes(dir);
}

async function readMeta(dir: string): Promise<LocalMeta | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as LocalMeta;
  } catch {
    return undefined;
  }
}

export default implementProvider(local, {
  async checkout(args, { record }, ctx) {
    if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${record.name}`, ctx.signal);
    const dir = join(rootOf(ctx), record.id);
    const home = join(dir, 'home');
    await mkdir(home, { recursive: true, mode: 0o700 });
    for (const [rel, content] of Object.entries(args.files ?? {})) {
      const target = resolve(home, rel);
      if (!target.startsWith(`${home}/`)) throw new ProviderError('local', `file path ${rel} leaves the home directory; use a relative path inside it.`);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content);
    }
    const { privateKeyPath, hostPublicKey } = await generateKeys(dir);
    const config: LocalServerConfig = {
      id: record.id,
      home,
      listen: ctx.instanceSettings.listen,
      hostKeyPath: join(dir, 'host_key'),
      authorizedKeyPath: join(dir, 'id_ed25519.pub'),
      name: record.name,
    };
    const configPath = join(dir, 'server.json');
    await writeFile(configPath, JSON.stringify(config, null, 2), { mode: 0o600 });
    const { pid, port } = await startServer(dir, configPath, ctx.signal);
    const username = userInfo().username;
    const meta: LocalMeta = {
      id: record.id,
      name: record.name,
      owner: record.owner,
      brokerId: record.brokerId,
      createdAt: record.createdAt,
      port,
      pid,
      username,
      recipe: record.recipe,
      ...(record.leaseExpires ? { leaseExpires: record.leaseExpires } : {}),
    };
    await writeFile(join(dir, 'meta.json'), JSON.stringify(meta, null, 2), { mode: 0o600 });
    return {
      hostname: config.listen,
      providerId: record.id,
      connection: { kind: 'ssh', host: config.listen, port, username, privateKeyPath, ...pinnedKey(hostPublicKey) },
      data: { home, pid, port, folder: dir },
    };
  },

  async release(record, ctx) {
    await destroy(join(rootOf(ctx), record.id));
  },

  async extend(record, leaseExpires, ctx) {
    const dir = join(rootOf(ctx), record.id);
    const meta = await readMeta(dir);
    if (!meta) throw new ProviderError('local', `${record.name} has no folder at ${dir} any more; it is gone.`);
    await writeFile(join(dir, 'meta.json'), JSON.stringify({ ...meta, leaseExpires }, null, 2), { mode: 0o600 });
  },

  async discover(ctx) {
    const root = rootOf(ctx);
    const found: DiscoveredHost[] = [];
    for (const id of await readdir(root).catch(() => [] as string[])) {
      const dir = join(root, id);
      const meta = await readMeta(dir);
      if (!meta || meta.brokerId !== ctx.brokerId || !isProcessAlive(meta.pid)) continue;
      found.push({
        id: meta.id,
        name: meta.name,
        hostname: ctx.instanceSettings.listen,
        providerId: meta.id,
        owner: meta.owner,
        brokerId: meta.brokerId,
        createdAt: meta.createdAt,
        recipe: meta.recipe,
        connection: {
          kind: 'ssh',
          host: ctx.instanceSettings.listen,
          port: meta.port,
          username: meta.username,
          privateKeyPath: join(dir, 'id_ed25519'),
          ...(await hostKeyOf(dir)),
        },
        data: { home: join(dir, 'home'), pid: meta.pid, port: meta.port, folder: dir },
        ...(meta.leaseExpires ? { leaseExpires: meta.leaseExpires } : {}),
      });
    }
    return found;
  },

  // Only what discover() cannot list: folders with no meta.json yet (a checkout killed before
  // it wrote one) or whose server is gone, named by a record id the inventory does not know.
  async reap(ctx, isKnown) {
    const root = rootOf(ctx);
    const removed: string[] = [];
    for (const id of await readdir(root).catch(() => [] as string[])) {
      const dir = join(root, id);
      const meta = await readMeta(dir);
      if (meta && (meta.brokerId !== ctx.brokerId || isProcessAlive(meta.pid))) continue;
      if (await isKnown(id)) continue;
      await destroy(dir);
      removed.push(id);
    }
    return removed;
  },
});
