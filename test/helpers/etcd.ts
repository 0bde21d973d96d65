/**
 * A real 3-node etcd cluster on 127.0.0.1 for a test: Debian's /usr/bin/etcd, free ports, data in
 * a temp dir, stopped by pid. Under CI=true a missing binary fails; elsewhere tests skip.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './sshd.js';

export const ETCD = '/usr/bin/etcd';

/** Whether etcd can run here; in CI a missing etcd is a failure, not a skip. */
export function etcdAvailable(): boolean {
  const ok = existsSync(ETCD);
  if (!ok && process.env.CI === 'true') throw new Error(`${ETCD} is missing in CI: scripts/setup-test-env.sh installs etcd-server.`);
  return ok;
}

/** Why the etcd tests skip here (for the skip message). */
export const ETCD_SKIP = `${ETCD} is not installed (apt-get install etcd-server); the etcd store tests need a real cluster`;

export interface EtcdNode {
  name: string;
  client: string;
  peer: string;
  process: ChildProcess | undefined;
}

export interface EtcdCluster {
  endpoints: string[];
  nodes: EtcdNode[];
  dir: string;
  /** The node that leads now. */
  leader(): Promise<EtcdNode>;
  /** SIGKILLs a node (its data stays, for a restart). */
  kill(node: EtcdNode): Promise<void>;
  /** Starts a killed node again on its ports and data. */
  restart(node: EtcdNode): Promise<void>;
  /** Waits until a quorum answers writes. */
  healthy(): Promise<void>;
  /** Stops every node by pid and removes the data. */
  stop(): Promise<void>;
}

export async function startEtcd(size = 3): Promise<EtcdCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'hb-etcd-'));
  const nodes: EtcdNode[] = [];
  for (let i = 1; i <= size; i++) {
    nodes.push({ name: `etcd${i}`, client: `http://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}`, process: undefined });
  }
  const initial = nodes.map((n) => `${n.name}=${n.peer}`).join(',');
  const token = `hb-${process.pid}-${Date.now()}`;
  const launch = (n: EtcdNode, state: 'new' | 'existing'): void => {
    const args = [
      ['--name', n.name],
      ['--data-dir', join(dir, n.name)],
      ['--listen-client-urls', n.client],
      ['--advertise-client-urls', n.client],
      ['--listen-peer-urls', n.peer],
      ['--initial-advertise-peer-urls', n.peer],
      ['--initial-cluster', initial],
      ['--initial-cluster-token', token],
      ['--initial-cluster-state', state],
      ['--heartbeat-interval', '100'],
      ['--election-timeout', '1000'],
      ['--log-level', 'error'],
    ].flat();
    n.process = spawn(ETCD, args, { stdio: 'ignore' });
  };
  for (const n of nodes) launch(n, 'new');
  const exited = (p: ChildProcess): Promise<void> =>
    p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));
  const cluster: EtcdCluster = {
    endpoints: nodes.map((n) => n.client),
    nodes,
    dir,
    async leader() {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        for (const n of nodes) {
          if (!n.process || n.process.exitCode !== null || n.process.signalCode !== null) continue;
          const status = await post(n.client, '/v3/maintenance/status');
          if (status?.leader && status.leader === status.header?.member_id) return n;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no etcd node became leader within 20 s');
    },
    async kill(n) {
      const p = n.process;
      if (!p) return;
      p.kill('SIGKILL');
      await exited(p);
      n.process = undefined;
    },
    async restart(n) {
      launch(n, 'existing');
      await cluster.healthy();
    },
    async healthy() {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const answers = await Promise.all(nodes.filter((n) => n.process).map((n) => get(n.client, '/health')));
        if (answers.some((a) => a?.health === 'true')) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the etcd cluster did not become healthy within 30 s');
    },
    async stop() {
      await Promise.all(nodes.map((n) => cluster.kill(n)));
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.healthy();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

async function post(base: string, path: string): Promise<{ leader?: string; header?: { member_id?: string } } | undefined> {
  try {
    const res = await fetch(base + path, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
    return (await res.json()) as { leader?: string; header?: { member_id?: string } };
  } catch {
    return undefined;
  }
}

async function get(base: string, path: string): Promise<{ health?: string } | undefined> {
  try {
    const res = await fetch(base + path, { signal: AbortSignal.timeout(1000) });
    return (await res.json()) as { health?: string };
  } catch {
    return undefined;
  }
}
