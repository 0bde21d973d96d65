/**
 * The inventory store conformance suite against the etcd store on a real 3-node cluster (the
 * file store runs it in test/inventory-store.test.ts), and what only a cluster can show: one
 * node lost changes nothing, quorum lost is an InventoryError naming the endpoints that answered,
 * a watch resumes after a leader change without missing an event, a fenced worker writes nothing.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdInventoryStore, EtcdUnavailableError } from '../../lib/inventory/index.js';
import { InventorySettings } from '../../lib/settings.js';
import { sampleRecord, testInventoryStore } from '../../lib/testing/store-suite.js';
import { type EtcdCluster, etcdAvailable, ETCD_SKIP, startEtcd } from '../helpers/etcd.js';

const available = etcdAvailable();
let cluster: EtcdCluster;
const settingsFor = (prefix: string, extra: Record<string, unknown> = {}) =>
  InventorySettings.parse({ store: 'etcd', endpoints: cluster.endpoints, prefix, workerTtl: 3, ...extra });

describe.skipIf(!available)(available ? 'etcd store' : `etcd store (skipped: ${ETCD_SKIP})`, () => {
  beforeAll(async () => {
    cluster = await startEtcd();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  // Every instance the suite makes for one place is another client on the same prefix, as
  // another machine would have; a fresh place is a fresh prefix.
  testInventoryStore('etcd', (sameAs) => new EtcdInventoryStore(sameAs ? (sameAs as EtcdInventoryStore).settings : settingsFor(`t-${randomUUID()}/`)));

  it('losing one node of three changes nothing; a watch goes on through the leader change', async () => {
    const a = new EtcdInventoryStore(settingsFor(`one-${randomUUID()}/`));
    const b = new EtcdInventoryStore(a.settings);
    try {
      await a.add([sampleRecord('r0', { data: { n: 0 } })]);
      const seen: string[] = [];
      const stop = a.watch((c) => {
        if (c.kind === 'host' && c.record) seen.push(String(c.record.data.n));
      });
      const leader = await cluster.leader();
      const bumps = Array.from({ length: 20 }, async (_, i) => {
        if (i === 5) await cluster.kill(leader);
        return b.patch('r0', (cur) => ({ data: { n: Number(cur.data.n) + 1 } }));
      });
      await Promise.all(bumps);
      expect((await a.get('r0'))!.data.n).toBe(20);
      const deadline = Date.now() + 15_000;
      while (!seen.includes('20') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      stop();
      // Every value from 1 to 20 reached the watcher, in order.
      expect(seen.filter((n) => n !== '0')).toEqual(Array.from({ length: 20 }, (_, i) => String(i + 1)));
      await cluster.restart(leader);
    } finally {
      await a.close();
      await b.close();
    }
  }, 60_000);

  it('a worker whose lease expired is fenced: its write is refused and the newer record stays', async () => {
    const settings = settingsFor(`fence-${randomUUID()}/`, { workerTtl: 2 });
    const stalled = new EtcdInventoryStore(settings);
    const other = new EtcdInventoryStore(settings);
    try {
      await stalled.add([sampleRecord('r', { pid: process.pid })]);
      const worker = (await stalled.get('r'))!.worker!;
      expect((await other.workers()).has(worker)).toBe(true);
      // Stand for a stall: the lease is revoked as etcd would expire it, the process does not know.
      const client = await other.client();
      await client.leaseClient.leaseRevoke({ ID: worker });
      expect((await other.workers()).has(worker)).toBe(false);
      await other.patch('r', { state: 'ready', hostname: 'newer' });
      const late = await stalled.patch('r', { hostname: 'late' }).catch((e: unknown) => e);
      expect(late).toMatchObject({ code: 'INVENTORY' });
      expect((late as Error).message).toMatch(/workerTtl/);
      expect((await other.get('r'))!.hostname).toBe('newer');
      expect(await stalled.reserve('r', 'p', ['m1']).catch((e: unknown) => (e as { code?: string }).code)).toBe('INVENTORY');
      expect(await other.reservations('p')).toEqual([]);
    } finally {
      await stalled.close();
      await other.close();
    }
  }, 30_000);

  it('quorum lost is an InventoryError naming the endpoints that answered, never a fallback', async () => {
    const store = new EtcdInventoryStore(settingsFor(`quorum-${randomUUID()}/`, { timeout: '3s' }));
    try {
      await store.add([sampleRecord('q')]);
      const [first, second, third] = cluster.nodes;
      await cluster.kill(first!);
      await cluster.kill(second!);
      const error = await store.patch('q', { state: 'ready' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EtcdUnavailableError);
      expect(error).toMatchObject({ code: 'INVENTORY', endpoints: { answered: [third!.client], healthy: [], silent: [first!.client, second!.client] } });
      expect((error as Error).message).toContain(third!.client);
      await cluster.restart(first!);
      await cluster.restart(second!);
      expect((await store.get('q'))!.id).toBe('q');
    } finally {
      await store.close();
    }
  }, 60_000);
});
