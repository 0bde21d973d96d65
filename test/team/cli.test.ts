/**
 * Team mode from the command line, on a real 3-node etcd, with the store chosen through
 * `BROKER_INVENTORY__*` variables: `inventory --store` copies a file inventory into etcd and back
 * without overwriting, `checkin --all --orphans` finishes only the hosts of dead workers, and
 * `inventory --watch` prints changes made elsewhere until Ctrl-C.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdInventoryStore, FileInventoryStore } from '../../lib/inventory/index.js';
import { InventorySettings } from '../../lib/settings.js';
import { sampleRecord } from '../../lib/testing/store-suite.js';
import { startCli } from '../helpers/cli-process.js';
import { type EtcdCluster, ETCD_SKIP, etcdAvailable, startEtcd } from '../helpers/etcd.js';

const available = etcdAvailable();
let cluster: EtcdCluster;
const dirs: string[] = [];
const newDir = async () => {
  const d = await mkdtemp(join(tmpdir(), 'hb-team-cli-'));
  dirs.push(d);
  return d;
};

/** The CLI in `directory` on the etcd prefix; `running` sees output as it comes. */
function hostbroker(directory: string, prefix: string, args: string[], store = 'etcd') {
  const env = { BROKER_INVENTORY__STORE: store, BROKER_INVENTORY__ENDPOINTS: cluster.endpoints.join(','), BROKER_INVENTORY__PREFIX: prefix };
  const { child, output, done } = startCli(directory, args, { env });
  return { child, running: output, done };
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!available)(available ? 'team mode CLI' : `team mode CLI (skipped: ${ETCD_SKIP})`, () => {
  beforeAll(async () => {
    cluster = await startEtcd();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('inventory --store etcd copies the file inventory, refuses to overwrite, and --store file copies it back', async () => {
    const prefix = `mig-${randomUUID()}/`;
    const home = await newDir();
    const file = new FileInventoryStore(home);
    await file.add([sampleRecord('a', { state: 'ready' }), sampleRecord('b', { reserved: { pool: 'static', resource: 'm1:22' } })]);
    await file.putDeployment({ id: 'd1', name: 'd1', createdAt: '2026-01-01T00:00:00.000Z', owner: 'me', metadata: {}, hosts: {} });

    const first = await hostbroker(home, prefix, ['inventory', '--store', 'etcd', '--json'], 'file').done;
    expect(first.status, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ hosts: { copied: 2, skipped: [], failed: [] }, deployments: { copied: 1, skipped: [] } });
    const etcd = new EtcdInventoryStore(InventorySettings.parse({ store: 'etcd', endpoints: cluster.endpoints, prefix }));
    try {
      expect(await etcd.snapshot()).toEqual(await file.snapshot());
      expect(await etcd.reservations('static')).toEqual([{ pool: 'static', resource: 'm1:22', recordId: 'b' }]);

      // Again: ids already there are left alone and reported.
      await etcd.patch('a', { hostname: 'changed-in-etcd' });
      const again = await hostbroker(home, prefix, ['inventory', '--store', 'etcd', '--json'], 'file').done;
      expect(JSON.parse(again.stdout)).toMatchObject({ hosts: { copied: 0, skipped: ['a', 'b'] }, deployments: { copied: 0, skipped: ['d1'] } });
      expect((await etcd.get('a'))!.hostname).toBe('changed-in-etcd');

      // Back into another machine's empty file.
      const other = await newDir();
      const back = await hostbroker(other, prefix, ['inventory', '--store', 'file'], 'etcd').done;
      expect(back.status).toBe(0);
      expect(back.stdout).toMatch(/copied 2 host record\(s\) and 1 deployment\(s\)/);
      expect(await new FileInventoryStore(other).snapshot()).toEqual(await etcd.snapshot());
    } finally {
      await etcd.close();
    }
  }, 60_000);

  it('checkin --all --orphans finishes only the hosts whose worker is gone', async () => {
    const prefix = `orph-${randomUUID()}/`;
    const live = new EtcdInventoryStore(InventorySettings.parse({ store: 'etcd', endpoints: cluster.endpoints, prefix }));
    try {
      // A host of this (live) worker, and one of a worker whose lease is gone.
      const claim = (resource: string) => ({ provider: 'static', recipe: { provider: 'static', args: {} }, reserved: { pool: 'static', resource } });
      await live.add([sampleRecord('mine', { ...claim('m1:22'), pid: process.pid, state: 'ready' })]);
      expect((await live.get('mine'))!.worker).toMatch(/\S/);
      await live.add([sampleRecord('orphan', { ...claim('m2:22'), worker: '7777', state: 'ready' })]);
      const ran = await hostbroker(await newDir(), prefix, ['checkin', '--all', '--orphans', '--json']).done;
      expect(ran.status, ran.stderr).toBe(0);
      expect(JSON.parse(ran.stdout)).toEqual([{ id: 'orphan', name: 'orphan' }]);
      expect((await live.list()).map((r) => r.id)).toEqual(['mine']);
      expect(await live.reservations('static')).toEqual([{ pool: 'static', resource: 'm1:22', recordId: 'mine' }]);
    } finally {
      await live.close();
    }
  }, 60_000);

  it('inventory --watch prints changes made by others until Ctrl-C', async () => {
    const prefix = `watch-${randomUUID()}/`;
    const store = new EtcdInventoryStore(InventorySettings.parse({ store: 'etcd', endpoints: cluster.endpoints, prefix }));
    try {
      const watching = hostbroker(await newDir(), prefix, ['inventory', '--watch', '--json']);
      await until(() => watching.running.stderr.includes('watching'));
      await store.add([sampleRecord('w1')]);
      await store.patch('w1', { state: 'ready', hostname: 'w1.test' });
      await store.remove(['w1']);
      await until(() => watching.running.stdout.trim().split('\n').length >= 3);
      watching.child.kill('SIGINT');
      const ran = await watching.done;
      expect(ran.status).toBe(0);
      const changes = ran.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { kind: string; id: string; record?: { state: string } });
      expect(changes.map((c) => [c.kind, c.id, c.record?.state ?? null])).toEqual([
        ['host', 'w1', 'provisioning'],
        ['host', 'w1', 'ready'],
        ['host', 'w1', null],
      ]);
    } finally {
      await store.close();
    }
  }, 60_000);
});
