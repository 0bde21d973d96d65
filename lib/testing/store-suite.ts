/**
 * The inventory store conformance suite: what "done" means for any {@link InventoryStore}, ours
 * or a third party's. Call it from a vitest test file (vitest is an optional peer; only this
 * module imports it):
 *
 * ```ts
 * import { testInventoryStore } from 'hostbroker/testing';
 * testInventoryStore('my store', (sameAs) => (sameAs ? new MyStore(sameAs.location) : new MyStore(freshPlace())));
 * ```
 * @module
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerError } from '../errors.js';
import type { DeploymentRecord, HostRecord } from '../records.js';
import type { InventoryChange, InventoryStore } from '../inventory/store.js';

/**
 * Makes a store for one test. Without an argument: a store on a fresh, empty place. With a store
 * it made: another instance on the same place, standing for another process (or machine).
 */
export type MakeStore = (sameAs?: InventoryStore) => InventoryStore | Promise<InventoryStore>;

/** A valid host record for tests, with every default filled in. */
export function sampleRecord(id: string, fields: Partial<HostRecord> = {}): HostRecord {
  return {
    id,
    name: id,
    hostname: '',
    provider: 'local',
    instance: 'default',
    state: 'provisioning',
    recipe: { provider: 'local', args: {} },
    owner: 'me',
    brokerId: 'b',
    createdAt: '2026-01-01T00:00:00.000Z',
    data: {},
    ...fields,
  };
}

function sampleDeployment(id: string, fields: Partial<DeploymentRecord> = {}): DeploymentRecord {
  return { id, name: id, createdAt: '2026-01-01T00:00:00.000Z', owner: 'me', metadata: { domains: [] }, hosts: {}, ...fields };
}

const ids = (records: readonly { id: string }[]): string[] => records.map((r) => r.id).sort();

/** The error a promise rejects with; fails the test when it resolves, or rejects with a non-BrokerError. */
async function rejection(work: Promise<unknown>): Promise<BrokerError> {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected the operation to be refused').toBeDefined();
  expect(BrokerError.isInstance(error), `expected a BrokerError, got ${String(error)}`).toBe(true);
  return error as BrokerError;
}

/** Waits until `done()` holds (a watch is asynchronous); fails saying what never happened. */
async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`the watch never reported: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What a watcher believes from the changes it was given (a `reset` re-reads the store). */
function follower(store: InventoryStore) {
  const hosts = new Map<string, HostRecord | undefined>();
  const deployments = new Map<string, DeploymentRecord | undefined>();
  const changes: InventoryChange[] = [];
  const onChange = (change: InventoryChange): void => {
    changes.push(change);
    if (change.kind === 'host') hosts.set(change.id, change.record);
    else if (change.kind === 'deployment') deployments.set(change.id, change.deployment);
    else
      void store.snapshot().then((s) => {
        for (const h of s.hosts) hosts.set(h.id, h);
        for (const d of s.deployments) deployments.set(d.id, d);
        for (const id of hosts.keys()) if (!s.hosts.some((h) => h.id === id)) hosts.set(id, undefined);
      });
  };
  return { hosts, deployments, changes, onChange };
}

/** Runs the conformance cases against the stores `makeStore` makes. */
export function testInventoryStore(name: string, makeStore: MakeStore): void {
  describe(`inventory store conformance: ${name}`, () => {
    const opened: InventoryStore[] = [];
    const open = async (sameAs?: InventoryStore): Promise<InventoryStore> => {
      const store = await makeStore(sameAs);
      opened.push(store);
      return store;
    };
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
    });

    it('starts empty, and says what and where it is', async () => {
      const s = await open();
      expect(s.kind).toMatch(/\S/);
      expect(s.location).toMatch(/\S/);
      expect(await s.list()).toEqual([]);
      expect(await s.get('a')).toBeUndefined();
      expect(await s.has('a')).toBe(false);
      expect(await s.snapshot()).toEqual({ hosts: [], deployments: [] });
      expect(await s.reservations()).toEqual([]);
    });

    it('adds records in one step, all or none, and refuses an id that exists', async () => {
      const s = await open();
      await s.add([sampleRecord('a'), sampleRecord('b', { state: 'ready', hostname: 'b.test' })]);
      expect(ids(await s.list())).toEqual(['a', 'b']);
      expect(await s.get('b')).toEqual(sampleRecord('b', { state: 'ready', hostname: 'b.test' }));
      expect(await s.has('a')).toBe(true);
      expect((await rejection(s.add([sampleRecord('c'), sampleRecord('a')]))).code).toBe('INVENTORY');
      expect((await rejection(s.add([sampleRecord('d'), sampleRecord('d')]))).code).toBe('INVENTORY');
      expect(ids(await s.list())).toEqual(['a', 'b']);
    });

    it('refuses an invalid record, naming the field, and changes nothing', async () => {
      const s = await open();
      await s.add([sampleRecord('a')]);
      const before = await s.snapshot();
      const bad = await rejection(s.add([sampleRecord('b', { state: 'bogus' as never })]));
      expect(bad.code).toBe('USER_INPUT');
      expect(bad.message).toMatch(/state/);
      expect((await rejection(s.patch('a', { state: 'bogus' as never }))).code).toBe('USER_INPUT');
      expect((await rejection(s.patch('a', () => ({ name: 42 as never })))).code).toBe('USER_INPUT');
      expect((await rejection(s.putDeployment({ id: 'd' } as never))).code).toBe('USER_INPUT');
      expect(await s.snapshot()).toEqual(before);
    });

    it('patches with fields or with a function of the current record; the id stays, undefined removes a field', async () => {
      const s = await open();
      await s.add([sampleRecord('a', { providerId: 'p-1', data: { n: 0 } })]);
      const ready = await s.patch('a', { state: 'ready', hostname: 'a.test' });
      expect(ready).toMatchObject({ id: 'a', state: 'ready', hostname: 'a.test', providerId: 'p-1' });
      expect(await s.get('a')).toEqual(ready);
      const counted = await s.patch('a', (cur) => ({ id: 'other', data: { ...cur.data, n: Number(cur.data.n) + 1 } }));
      expect(counted).toMatchObject({ id: 'a', data: { n: 1 } });
      expect(await s.has('other')).toBe(false);
      const dropped = await s.patch('a', { providerId: undefined });
      expect(dropped).not.toHaveProperty('providerId');
      expect(await s.get('a')).not.toHaveProperty('providerId');
      expect(await s.patch('a', () => undefined)).toEqual(dropped);
      expect(await s.patch('gone', { state: 'ready' })).toBeUndefined();
      expect(await s.has('gone')).toBe(false);
    });

    it('patches and removes only while the condition holds', async () => {
      const s = await open();
      await s.add([sampleRecord('a'), sampleRecord('b', { state: 'ready' }), sampleRecord('c', { state: 'releasing' })]);
      expect(await s.patch('a', { hostname: 'x' }, { state: 'ready' })).toBeUndefined();
      expect((await s.get('a'))!.hostname).toBe('');
      expect((await s.patch('a', { state: 'ready' }, { state: 'provisioning' }))!.state).toBe('ready');
      expect((await s.patch('b', { lastError: 'e' }, { state: ['provisioning', 'ready'] }))!.lastError).toBe('e');
      expect((await s.remove(['a', 'b', 'c', 'missing'], { state: 'ready' })).sort()).toEqual(['a', 'b']);
      expect(ids(await s.list())).toEqual(['c']);
      expect(await s.remove(['c', 'missing'], { state: ['provisioning', 'releasing'] })).toEqual(['c']);
      expect(await s.remove(['c'])).toEqual([]);
    });

    it('reserves the first candidate no other record holds in the pool, on the record', async () => {
      const s = await open();
      await s.add(['a', 'b', 'c', 'd'].map((id) => sampleRecord(id)));
      const pool = 'static/default';
      expect(await s.reserve('a', pool, ['m1', 'm2'])).toBe('m1');
      expect(await s.reserve('b', pool, ['m1', 'm2'])).toBe('m2');
      expect(await s.reserve('c', pool, ['m1', 'm2'])).toBeUndefined();
      expect(await s.reserve('c', 'static/other', ['m1'])).toBe('m1');
      expect(await s.reserve('a', pool, ['m1', 'm2'])).toBe('m1');
      expect((await s.get('a'))!.reserved).toEqual({ pool, resource: 'm1' });
      expect((await s.get('d'))!.reserved).toBeUndefined();
      const byResource = (list: { resource: string }[]) => [...list].sort((x, y) => x.resource.localeCompare(y.resource));
      expect(byResource(await s.reservations(pool))).toEqual([
        { pool, resource: 'm1', recordId: 'a' },
        { pool, resource: 'm2', recordId: 'b' },
      ]);
      expect(await s.reservations()).toHaveLength(3);
      expect((await rejection(s.reserve('gone', pool, ['m3']))).code).toBe('INVENTORY');
      expect(await s.reservations(pool)).toHaveLength(2);
    });

    it('removing a record frees what it reserved', async () => {
      const s = await open();
      await s.add([sampleRecord('a'), sampleRecord('b')]);
      expect(await s.reserve('a', 'p', ['m1'])).toBe('m1');
      expect(await s.reserve('b', 'p', ['m1'])).toBeUndefined();
      expect(await s.remove(['a'])).toEqual(['a']);
      expect(await s.reservations('p')).toEqual([]);
      expect(await s.reserve('b', 'p', ['m1'])).toBe('m1');
    });

    it('refuses to give a held resource to a second record by patch or add, changing nothing', async () => {
      const s = await open();
      await s.add([sampleRecord('a'), sampleRecord('b')]);
      await s.reserve('a', 'p', ['m1']);
      const before = await s.snapshot();
      expect((await rejection(s.patch('b', { reserved: { pool: 'p', resource: 'm1' } }))).code).toBe('INVENTORY');
      expect((await rejection(s.add([sampleRecord('c', { reserved: { pool: 'p', resource: 'm1' } })]))).code).toBe('INVENTORY');
      expect(await s.snapshot()).toEqual(before);
    });

    it('concurrent reservations from several instances claim each resource once', async () => {
      const s = await open();
      const stores = [s, await open(s), await open(s)];
      const records = Array.from({ length: 12 }, (_, i) => sampleRecord(`r${i}`));
      await s.add(records);
      const candidates = ['m1', 'm2', 'm3', 'm4', 'm5'];
      const got = await Promise.all(records.map((r, i) => stores[i % stores.length]!.reserve(r.id, 'pool', candidates)));
      expect(got.filter((g) => g !== undefined).sort()).toEqual(candidates);
      expect((await s.reservations('pool')).map((r) => r.resource).sort()).toEqual(candidates);
      for (const [i, r] of records.entries()) expect((await s.get(r.id))!.reserved?.resource).toBe(got[i]);
    });

    it('concurrent patches and adds from several instances lose no update', async () => {
      const s = await open();
      const stores = [s, await open(s), await open(s)];
      await s.add([sampleRecord('a', { data: { n: 0 } })]);
      const bump = (st: InventoryStore) => st.patch('a', (cur) => ({ data: { ...cur.data, n: Number(cur.data.n) + 1 } }));
      await Promise.all(stores.flatMap((st, k) => Array.from({ length: 10 }, (_, i) => Promise.all([bump(st), st.add([sampleRecord(`s${k}-${i}`)])]))));
      expect((await s.get('a'))!.data.n).toBe(30);
      expect(await s.list()).toHaveLength(31);
    });

    it('records, replaces and removes deployments', async () => {
      const s = await open();
      await s.putDeployment(sampleDeployment('d1'));
      await s.putDeployment(sampleDeployment('d2'));
      await s.putDeployment(sampleDeployment('d1', { name: 'renamed' }));
      const { deployments } = await s.snapshot();
      expect(ids(deployments)).toEqual(['d1', 'd2']);
      expect(deployments.find((d) => d.id === 'd1')!.name).toBe('renamed');
      expect(await s.removeDeployment('d1')).toBe(true);
      expect(await s.removeDeployment('d1')).toBe(false);
      expect(ids((await s.snapshot()).deployments)).toEqual(['d2']);
    });

    it('a watch reports changes made through another instance, until it is stopped', async (ctx) => {
      const s = await open();
      if (!s.watch) return ctx.skip();
      const other = await open(s);
      const seen = follower(s);
      const stop = s.watch(seen.onChange);
      await other.add([sampleRecord('a')]);
      await until('a added', () => seen.hosts.get('a') !== undefined);
      await other.patch('a', { state: 'ready' });
      await until('a ready', () => seen.hosts.get('a')?.state === 'ready');
      await other.putDeployment(sampleDeployment('d1'));
      await until('d1 recorded', () => seen.deployments.get('d1') !== undefined);
      await other.remove(['a']);
      await until('a removed', () => seen.hosts.has('a') && seen.hosts.get('a') === undefined);
      stop();
      // A later change reaches a live watcher, and not the stopped one.
      const closing = follower(s);
      s.watch(closing.onChange);
      const count = seen.changes.length;
      await other.add([sampleRecord('b')]);
      await until('b added (second watcher)', () => closing.hosts.get('b') !== undefined);
      expect(seen.changes.slice(count)).toEqual([]);
      // close() stops watches too.
      await s.close();
      const after = closing.changes.length;
      const witness = follower(other);
      other.watch!(witness.onChange);
      await other.add([sampleRecord('c')]);
      await until('c added (witness)', () => witness.hosts.get('c') !== undefined);
      expect(closing.changes.slice(after)).toEqual([]);
    });
  });
}
