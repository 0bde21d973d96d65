/**
 * Warm reuse on real `local` hosts: the pool across separate processes (the second gets the
 * first's host, by id), four processes racing for two pooled hosts (never shared), reset on
 * checkin, idle expiry releasing pooled hosts (their server really gone), `emptyPool`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { isProcessAlive } from '../../lib/identity.js';
import type { HostRecord } from '../../lib/records.js';

const VITEST = resolve('node_modules/vitest/vitest.mjs');
const FIXTURES = resolve('lib/runners/vitest.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const CHILD = resolve('test/hosts/reuse-child.ts');
const directories: string[] = [];

afterAll(async () => {
  for (const directory of directories) {
    const broker = new Broker({ directory });
    await broker.checkin({ all: true }).catch(() => undefined);
    await broker.close();
    await rm(directory, { recursive: true, force: true });
  }
});

async function newDirectory(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'hb-reuse-'));
  directories.push(directory);
  return directory;
}

/** Runs the child; resolves with the id it claimed once it printed it, and its end. */
function child(directory: string, barrier?: string): { claimed: Promise<string>; done: Promise<void> } {
  const proc = spawn(process.execPath, ['--import', TSX, CHILD, directory, ...(barrier ? [barrier] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let onClaim: (id: string) => void = () => undefined;
  const claimed = new Promise<string>((resolve) => (onClaim = resolve));
  proc.stdout.on('data', (d: Buffer) => {
    out += String(d);
    const m = /^claimed (\S+)/m.exec(out);
    if (m) onClaim(m[1]!);
  });
  proc.stderr.on('data', (d: Buffer) => (err += String(d)));
  const done = new Promise<void>((resolve, reject) =>
    proc.on('close', (code) => (code === 0 && out.includes('done') ? resolve() : reject(new Error(`child exited ${code}: ${out} ${err}`)))),
  );
  done.catch(() => onClaim('(failed)'));
  return { claimed, done };
}

/** Whether the local host's SSH server (the resource the provider made) still runs. */
function serverAlive(record: HostRecord): boolean {
  const pid = (record.data as { pid?: number }).pid;
  return typeof pid === 'number' && isProcessAlive(pid);
}

describe('warm reuse of local hosts', () => {
  it('a second process gets the host the first returned to the pool, by id; the inventory shows it pooled', async () => {
    const directory = await newDirectory();
    const first = child(directory);
    const id = await first.claimed;
    await first.done;
    const broker = new Broker({ directory });
    const [pooled] = await broker.inventory();
    expect(pooled).toMatchObject({ id, state: 'ready', pooled: { recipe: expect.any(String) } });
    const second = child(directory);
    expect(await second.claimed).toBe(id);
    await second.done;
    expect((await broker.inventory()).map((r) => r.id)).toEqual([id]);
    // A checkout of another recipe does not take it.
    await using other = await broker.checkout({ provider: 'local', reuse: true, files: { 'a.txt': 'x' } });
    expect(other.id).not.toBe(id);
    await broker.close();
  });

  it('four processes racing for two pooled hosts never share one: two get the pooled hosts, two get new ones', async () => {
    const directory = await newDirectory();
    const broker = new Broker({ directory });
    const pooled = await broker.checkout({ provider: 'local', reuse: true, count: 2 });
    const pooledIds = pooled.map((h) => h.id).sort();
    await pooled.checkin();
    expect(
      (await broker.inventory())
        .filter((r) => r.pooled)
        .map((r) => r.id)
        .sort(),
    ).toEqual(pooledIds);
    const barrier = join(directory, 'go');
    const children = Array.from({ length: 4 }, () => child(directory, barrier));
    // Every child holds its host until all four have one.
    const ids = await Promise.all(children.map((c) => c.claimed));
    await writeFile(barrier, '');
    await Promise.all(children.map((c) => c.done));
    expect(new Set(ids).size).toBe(4);
    expect(ids.filter((id) => pooledIds.includes(id)).sort()).toEqual(pooledIds);
    // All four are back in the pool.
    expect((await broker.inventory()).filter((r) => r.pooled)).toHaveLength(4);
    await broker.close();
  });

  it('checkin runs reset before pooling; a failing reset releases the host instead', async () => {
    const directory = await newDirectory();
    const broker = new Broker({ directory });
    const host = await broker.checkout({ provider: 'local', reuse: true, reset: 'rm -f dirty' });
    await host.execute('touch dirty', { check: true });
    // A process the test did not stop does not wait in the pool for the next user.
    await host.spawn('exec sleep 1005');
    await host.checkin();
    {
      await using again = await broker.checkout({ provider: 'local', reuse: true, reset: 'exit 1' });
      expect(again.id).toBe(host.id);
      expect((await again.execute('test -e dirty')).status).toBe(1);
      const procs = await again.execute(`for d in /proc/[0-9]*; do tr '\\0' ' ' < "$d/cmdline" 2>/dev/null; echo; done`, { check: true });
      expect(procs.stdout).not.toContain('sleep 1005');
    }
    // The reset failed: released, not pooled.
    expect(await broker.inventory()).toEqual([]);
    await broker.close();
  });

  it('a pooled host that died is released and a fresh one is made', async () => {
    const directory = await newDirectory();
    const broker = new Broker({ directory, settings: { ssh: { readyTimeout: '2s' } } });
    const first = await broker.checkout({ provider: 'local', reuse: true });
    const record = first.record;
    await first.checkin();
    // The host's SSH server dies while the host waits in the pool.
    process.kill((record.data as { pid: number }).pid, 'SIGKILL');
    await broker.close();
    const later = new Broker({ directory, settings: { ssh: { readyTimeout: '2s' } } });
    await using second = await later.checkout({ provider: 'local', reuse: true });
    expect(second.id).not.toBe(record.id);
    expect((await second.execute('true')).status).toBe(0);
    expect((await later.inventory()).map((r) => r.id)).toEqual([second.id]);
    expect(existsSync(join(directory, 'local-hosts', record.id))).toBe(false);
  });

  it('pooled hosts idle longer than checkout.reuseIdle are released by reap and by the next checkin; emptyPool releases the rest', async () => {
    const directory = await newDirectory();
    const broker = new Broker({ directory });
    const group = await broker.checkout({ provider: 'local', reuse: true, count: 2 });
    const records = group.map((h) => h.record);
    await group.checkin();
    expect(records.every(serverAlive)).toBe(true);
    // Another Broker on the directory for which every pooled host is idle too long.
    const strict = new Broker({ directory, settings: { checkout: { reuseIdle: 0 } } });
    const { released } = await strict.reap('local');
    expect(released.map((r) => r.id).sort()).toEqual(records.map((r) => r.id).sort());
    expect(await broker.inventory()).toEqual([]);
    expect(records.some(serverAlive)).toBe(false);
    expect(records.some((r) => existsSync(join(directory, 'local-hosts', r.id)))).toBe(false);

    // The next checkin of anything expires idle pooled hosts too.
    const idle = await broker.checkout({ provider: 'local', reuse: true });
    await idle.checkin();
    await using plain = await strict.checkout({ provider: 'local' });
    await plain.checkin();
    expect((await broker.inventory()).map((r) => r.id)).not.toContain(idle.id);

    const last = await broker.checkout({ provider: 'local', reuse: true });
    await last.checkin();
    expect((await broker.emptyPool()).map((r) => r.id)).toEqual([last.id]);
    expect(await broker.inventory()).toEqual([]);
    await strict.close();
    await broker.close();
  });

  it('a vitest fixture factory with reuse: true hands the next run the host the last run used', async () => {
    const directory = await newDirectory();
    const project = await mkdtemp(join(tmpdir(), 'hb-reuse-project-'));
    directories.push(project);
    await writeFile(join(project, 'vitest.config.mjs'), `export default { test: { include: ['*.test.ts'], pool: 'forks', hookTimeout: 60000 } };\n`);
    await writeFile(
      join(project, 'web.test.ts'),
      `import { test as base, expect } from 'vitest';
import { appendFileSync } from 'node:fs';
import { hostbroker } from ${JSON.stringify(FIXTURES)};
const hb = hostbroker({ broker: { directory: process.env.HB_DIR }, reuse: true });
const test = base.extend('web', hb.host({ provider: 'local', reset: 'rm -f scratch' }));
test('uses the host', async ({ web }) => {
  await web.execute('test ! -e scratch && touch scratch', { check: true });
  appendFileSync(process.env.HB_IDS, web.id + '\\n');
});
`,
    );
    const ids = join(project, 'ids');
    for (let run = 0; run < 2; run++) {
      const proc = spawn(process.execPath, [VITEST, 'run', '--root', project], {
        env: { ...process.env, HB_DIR: directory, HB_IDS: ids },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      proc.stdout.on('data', (d: Buffer) => (output += String(d)));
      proc.stderr.on('data', (d: Buffer) => (output += String(d)));
      expect(await new Promise((r) => proc.on('close', r)), output).toBe(0);
    }
    const [first, second] = (await readFile(ids, 'utf8')).trim().split('\n');
    expect(second).toBe(first);
    const broker = new Broker({ directory });
    expect(await broker.inventory()).toMatchObject([{ id: first, pooled: { recipe: expect.any(String) } }]);
    await broker.emptyPool();
    await broker.close();
  });
});
