/**
 * The team race from issue 15: 3 "machines" (broker directories) x 4 worker processes race for
 * 5 `static` machines (one real sshd listening on 127.0.0.1-5) through a 3-node etcd inventory,
 * while the test SIGKILLs the etcd leader, later a worker, and SIGSTOPs another worker past its
 * lease. Checked: never two holders of one machine (an exclusive noclobber mark inside the
 * machine, and the inventory), no record lost or duplicated, the killed and the stopped worker's
 * machines freed within workerTtl plus a margin, the stopped worker's late write refused, and
 * quorum loss a clear InventoryError.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Broker } from '../../lib/broker/index.js';
import { EtcdInventoryStore, EtcdUnavailableError } from '../../lib/inventory/index.js';
import { InventorySettings } from '../../lib/settings.js';
import { type EtcdCluster, ETCD_SKIP, etcdAvailable, startEtcd } from '../helpers/etcd.js';
import { type Sshd, sshdAvailable, startSshd } from '../helpers/sshd.js';

// As test/cli.test.ts: the built library under `npm test` (HB_TEST_BUILT=1), else the sources through tsx.
const BUILT = process.env.HB_TEST_BUILT === '1';
const LIBRARY = resolve(BUILT ? 'dist/lib/index.js' : 'lib/index.ts');
const NODE_ARGS = BUILT ? [] : ['--import', 'tsx'];
const WORKER = resolve('test/team/race-worker.mjs');

const MACHINES = 3;
const WORKERS_PER_MACHINE = 4;
const CYCLES = 20;
/** Short, to keep the test short; enough for a worker on a loaded 2-CPU machine to renew in time. */
const TTL = 4;
/** Beyond the TTL: a reaper's next look (every 0.5 s while waiting) and its release. */
const MARGIN_MS = 6000;

type Event = { pid: number; ev: string; [k: string]: unknown };
interface Worker {
  child: ChildProcess;
  pid: number;
  events: Event[];
  exited: Promise<number | null>;
  next(ev: string): Promise<Event>;
}

const available = etcdAvailable() && sshdAvailable();
const why = etcdAvailable() ? 'sshd is not installed' : ETCD_SKIP;

describe.skipIf(!available)(available ? 'team race on etcd' : `team race on etcd (skipped: ${why})`, () => {
  let cluster: EtcdCluster;
  let sshd: Sshd;
  let root: string;
  let settings: InventorySettings;
  const workers: Worker[] = [];

  beforeAll(async () => {
    [cluster, sshd] = await Promise.all([startEtcd(), startSshd({ extra: [2, 3, 4, 5].map((i) => `ListenAddress 127.0.0.${i}`) })]);
    root = await mkdtemp(join(tmpdir(), 'hb-race-'));
    settings = InventorySettings.parse({ store: 'etcd', endpoints: cluster.endpoints, prefix: `race-${randomUUID()}/`, workerTtl: TTL });
  }, 60_000);
  afterAll(async () => {
    for (const w of workers) {
      w.child.kill('SIGCONT');
      w.child.kill('SIGKILL');
      await w.exited;
    }
    await cluster?.stop();
    await sshd?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** Writes one "machine": a broker directory on the shared inventory with the 5 static machines. */
  async function machine(name: string): Promise<string> {
    const directory = join(root, name);
    await mkdir(directory, { recursive: true });
    const hosts = [1, 2, 3, 4, 5].map((i) => ({
      name: `m${i}`,
      hostname: `127.0.0.${i}`,
      port: sshd.port,
      username: sshd.username,
      privateKeyPath: sshd.privateKeyPath,
    }));
    await writeFile(join(directory, 'broker_settings.yaml'), stringify({ inventory: settings, static: { hosts }, logLevel: 'silent' }));
    return directory;
  }

  function start(directory: string, marks: string, mode?: 'stall'): Worker {
    const child = spawn(process.execPath, [...NODE_ARGS, WORKER, LIBRARY, String(CYCLES), marks, ...(mode ? [mode] : [])], {
      env: { ...process.env, BROKER_DIRECTORY: directory },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const events: Event[] = [];
    const waiting = new Map<string, (e: Event) => void>();
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += String(d);
      if (process.env.DEBUG_RACE) process.stderr.write(`W${child.pid}: ${String(d)}`);
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let e: Event;
      try {
        e = JSON.parse(line) as Event;
      } catch {
        return;
      }
      events.push(e);
      waiting.get(e.ev)?.(e);
    });
    const exited = new Promise<number | null>((r) =>
      child.once('exit', (code) => {
        if (code !== 0 && code !== null && code !== 3) events.push({ pid: child.pid!, ev: 'crash', code, stderr: stderr.slice(-2000) });
        r(code);
      }),
    );
    const w: Worker = {
      child,
      pid: child.pid!,
      events,
      exited,
      next: (ev) => {
        const seen = events.find((e) => e.ev === ev);
        if (seen) return Promise.resolve(seen);
        const ended = exited.then((code): Event => {
          throw new Error(`worker ${child.pid} exited (${code}) before \`${ev}\`: ${stderr.slice(-1500)}`);
        });
        return Promise.race([new Promise<Event>((r) => waiting.set(ev, r)), ended]);
      },
    };
    workers.push(w);
    return w;
  }

  const cycles = () => workers.reduce((n, w) => n + w.events.filter((e) => e.ev === 'cycle').length, 0);
  async function untilCycles(n: number): Promise<void> {
    while (cycles() < n) await new Promise((r) => setTimeout(r, 25));
  }
  /** Waits until none of `ids` is in the inventory, failing after `boundMs`. */
  async function untilGone(store: EtcdInventoryStore, ids: string[], boundMs: number, what: string): Promise<void> {
    const deadline = Date.now() + boundMs;
    for (;;) {
      const left = (await store.list()).filter((r) => ids.includes(r.id));
      if (!left.length) return;
      if (Date.now() > deadline) throw new Error(`${what}: still held after ${boundMs} ms: ${left.map((r) => `${r.name} (${r.state})`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('never two holders; no record lost or duplicated; dead and stalled workers are finished; quorum loss is clear', async () => {
    const marks = join(root, 'marks');
    await mkdir(marks);
    const dirs = await Promise.all(Array.from({ length: MACHINES }, (_, i) => machine(`machine-${i + 1}`)));
    const observer = new EtcdInventoryStore(settings);
    // DEBUG_RACE=1: the progress and each worker's stderr while it runs.
    const progress = process.env.DEBUG_RACE ? setInterval(() => console.error(`race: ${cycles()} cycles`), 5000) : undefined;
    try {
      // The stalled worker takes a machine first, then is stopped.
      const staller = start(dirs[2]!, marks, 'stall');
      const holding = await staller.next('holding');
      staller.child.kill('SIGSTOP');
      const racers = dirs.flatMap((dir) => Array.from({ length: WORKERS_PER_MACHINE }, () => start(dir, marks)));
      const total = racers.length * CYCLES;

      // The etcd leader dies a fifth of the way in, and comes back a little later.
      await untilCycles(total / 5);
      const leader = await cluster.leader();
      await cluster.kill(leader);
      await untilCycles(total / 5 + 30);
      await cluster.restart(leader);

      // The stopped worker's machine is finished by the others within its TTL and a margin.
      await untilGone(observer, [holding.id as string], TTL * 1000 + MARGIN_MS + 10_000, 'the SIGSTOPped worker');

      // Half-way, a worker that holds a machine is SIGKILLed.
      await untilCycles(total / 2);
      let victim: Worker | undefined;
      let held: string[] = [];
      while (!victim) {
        const records = await observer.list();
        victim = racers.find((w) => records.some((r) => r.pid === w.pid && r.state === 'ready'));
        held = records.filter((r) => r.pid === victim?.pid).map((r) => r.id);
        if (!victim) await new Promise((r) => setTimeout(r, 5));
      }
      victim.child.kill('SIGKILL');
      await victim.exited;
      await untilGone(observer, held, TTL * 1000 + MARGIN_MS, 'the SIGKILLed worker');

      // The stopped worker wakes up: its late write (a reservation) is refused.
      staller.child.kill('SIGCONT');
      staller.child.stdin!.write('go\n');
      const late = await staller.next('late-write');
      expect(late).toMatchObject({ ok: false, code: 'INVENTORY', fenced: true });

      await Promise.all(racers.map((w) => w.exited));
      const events = workers.flatMap((w) => w.events);
      const of = (ev: string) => events.filter((e) => e.ev === ev);
      expect(of('double')).toEqual([]);
      expect(of('lost')).toEqual([]);
      expect(of('crash')).toEqual([]);
      expect(of('error')).toEqual([]);
      // No live racer lost its lease (only the stopped worker is fenced).
      expect(of('fenced')).toEqual([]);
      const ids = of('cycle').map((e) => e.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBeGreaterThanOrEqual((racers.length - 1) * CYCLES);
      for (const w of racers.filter((r) => r !== victim)) expect(w.events.filter((e) => e.ev === 'done')).toEqual([{ pid: w.pid, ev: 'done', cycles: CYCLES }]);
      // Both dead workers' records were finished by others (reaped), and nothing is left behind.
      const reaped = of('reaped').map((e) => e.id);
      for (const id of [holding.id, ...held]) expect(reaped).toContain(id);
      expect(await observer.list()).toEqual([]);
      expect(await observer.reservations()).toEqual([]);
      console.info(
        `team race: ${ids.length} cycles by ${racers.length} workers on ${MACHINES} machines; ${of('reaped').length} reaped, ${of('stale').length} stale marks of dead holders cleared`,
      );

      // Quorum lost: two of three nodes gone. A checkout fails with the clear error, on no file.
      await cluster.kill(cluster.nodes[0]!);
      await cluster.kill(cluster.nodes[1]!);
      const broker = new Broker({ directory: dirs[0]!, settings: { inventory: { timeout: '2s' } } });
      try {
        const error = await broker.checkout({ provider: 'static', waitForSsh: false }).catch((e: unknown) => e);
        expect(error, String(error)).toBeInstanceOf(EtcdUnavailableError);
        expect(error).toMatchObject({ code: 'INVENTORY', endpoints: { answered: [cluster.nodes[2]!.client] } });
      } finally {
        await broker.close();
      }
    } finally {
      clearInterval(progress);
      await observer.close();
    }
  }, 180_000);
});
