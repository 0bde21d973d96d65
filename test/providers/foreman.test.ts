/**
 * The `foreman` provider against a fake Foreman server (test/helpers/fake-foreman.ts) that
 * follows the documented REST API v2. No real Foreman can run here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError, SettingsError, TimeoutError, UserInputError } from '../../lib/errors.js';
import type { CheckoutTarget } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { type TestContext, intentRecord, testContext, testHostContext } from '../../lib/testing/index.js';
import { type ForemanInstance, foreman } from '../../providers/foreman/definition.js';
import impl from '../../providers/foreman/provider.js';
import { FakeForeman, type FakeHostgroup } from '../helpers/fake-foreman.js';
import { rejection } from '../helpers/rejection.js';

let fake: FakeForeman;
let dir: string;
let rhel9: FakeHostgroup;

beforeEach(async () => {
  fake = await FakeForeman.start();
  dir = await mkdtemp(join(tmpdir(), 'hb-foreman-'));
  contexts.length = 0;
  fake.addHostgroup({ title: 'base' });
  rhel9 = fake.addHostgroup({ title: 'base/rhel9', polls: 2 });
  fake.addHostgroup({ title: 'base/broken', outcome: 'failed' });
});

afterEach(async () => {
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

type Context = TestContext<ForemanInstance>;
const contexts: Context[] = [];

async function context(instance: Record<string, unknown> = {}): Promise<Context> {
  const t = await testContext(foreman, {
    instanceSettings: {
      baseUrl: fake.url,
      username: fake.username,
      password: fake.password,
      pollInterval: 5,
      retryDelay: 5,
      requestTimeout: '5s',
      ...instance,
    },
    directory: dir,
    brokerId: 'broker-1',
    owner: 'jdoe',
  });
  contexts.push(t);
  return t;
}

/** Every line any context logged, and every record it holds (to check no secret is in them). */
const logLines = () => contexts.flatMap((t) => t.logLines);
const records = () => JSON.stringify(contexts.flatMap((t) => [...t.records.values()]));

function target(t: Context, args: Record<string, unknown>, index = 0): CheckoutTarget {
  return { record: intentRecord(t, { name: `Web_${index}`, recipe: { provider: 'foreman', args } }), index, count: 1 };
}

/** The record as stored now (with what checkout noted through checkpoint). */
const stored = (t: Context, record: HostRecord) => t.records.get(record.id)!;

async function checkout(t: Context, raw: Record<string, unknown>, index = 0) {
  const tg = target(t, raw, index);
  return { host: await impl.checkout(foreman.args.parse(raw), tg, testHostContext(t, tg.record)), record: tg.record };
}

describe('foreman checkout', () => {
  it('creates a host in the hostgroup with build mode and tag parameters, and waits for the build', async () => {
    const ctx = await context({ organizationId: 3 });
    const { host, record } = await checkout(ctx, { hostgroup: 'base/rhel9', parameters: { purpose: 'ci' } });
    expect(host).toMatchObject({
      hostname: 'web-0.example.test',
      name: 'web-0.example.test',
      data: { hostgroup: 'base/rhel9', operatingsystem: 'RedHat 9.4' },
    });
    expect(host.connection).toMatchObject({ kind: 'ssh', host: 'web-0.example.test', username: 'root' });
    const made = fake.hosts.get(Number(host.providerId))!;
    expect(made.body).toMatchObject({ hostgroup_id: rhel9.id, build: true, organization_id: 3 });
    expect(Object.fromEntries(made.parameters.map((p) => [p.name, p.value]))).toMatchObject({
      'hostbroker.id': record.id,
      'hostbroker.owner': 'jdoe',
      purpose: 'ci',
    });
    // At least one poll saw it pending before it was installed.
    expect(fake.requests.filter((r) => r.method === 'GET' && r.url === `/api/hosts/${made.id}`).length).toBeGreaterThanOrEqual(3);
    // The host id is noted at once (ctx.checkpoint), so a killed checkout can be released.
    expect(stored(ctx, record).data.foremanId).toBe(made.id);
  });

  it('releases a record killed before it noted the host id, by a parameter Foreman can search (no dot in its name)', async () => {
    const ctx = await context();
    const { host, record } = await checkout(ctx, { hostgroup: 'base/rhel9' });
    const other = await checkout(ctx, { hostgroup: 'base/rhel9' }, 1);
    // The record as the Broker wrote it before checkout: nothing noted.
    await impl.release(record, testHostContext(ctx, record));
    expect(fake.hosts.has(Number(host.providerId))).toBe(false);
    expect(fake.hosts.has(Number(other.host.providerId))).toBe(true);
    expect(fake.requests.some((r) => r.method === 'GET' && r.url.includes('params.hostbroker_id'))).toBe(true);
  });

  it('reaches hosts at their IP with address: ip, and resolves hostgroups by id', async () => {
    const { host } = await checkout(await context({ address: 'ip' }), { hostgroup: rhel9.id, name: 'db1' });
    expect(host.hostname).toMatch(/^192\.0\.2\.\d+$/);
    expect(host.name).toBe('db1.example.test');
  });

  it("deletes a host whose build failed, and says so with Foreman's label", async () => {
    const ctx = await context();
    const t = target(ctx, { hostgroup: 'base/broken' });
    const error = await rejection(impl.checkout(foreman.args.parse({ hostgroup: 'base/broken' }), t, testHostContext(ctx, t.record)));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toMatch(/Installation error; the host was deleted/);
    expect(fake.hosts.size).toBe(0);
    // Releasing the failed record afterwards (as stored, with what checkout noted) sends no second delete.
    await impl.release(stored(ctx, t.record), testHostContext(ctx, t.record));
    expect(fake.requests.filter((r) => r.method === 'DELETE')).toHaveLength(1);
  });

  it('keeps a host whose build failed with dangling: keep, naming it for the Broker to record', async () => {
    const ctx = await context();
    const t = target(ctx, { hostgroup: 'base/broken', dangling: 'keep' });
    const error = await rejection<ProviderError>(
      impl.checkout(foreman.args.parse({ hostgroup: 'base/broken', dangling: 'keep' }), t, testHostContext(ctx, t.record)),
    );
    expect(error.message).toMatch(/Installation error.*kept/);
    const [made] = [...fake.hosts.values()];
    expect(error.dangling).toEqual([{ name: made!.name, hostname: made!.name, providerId: String(made!.id), data: { foremanId: made!.id } }]);
    // The failed record's release leaves the kept host alone...
    await impl.release(stored(ctx, t.record), testHostContext(ctx, t.record));
    expect(fake.hosts.size).toBe(1);
    // ...and the kept host, recorded as the Broker does, is checked in like any other.
    const kept: HostRecord = { ...t.record, id: 'kept-1', name: made!.name, state: 'ready', providerId: String(made!.id), data: { foremanId: made!.id } };
    await impl.release(kept, testHostContext(ctx, kept));
    expect(fake.hosts.size).toBe(0);
  });

  it('gives up a slow build at buildTimeout and deletes the host', async () => {
    rhel9.polls = 10_000;
    const error = await rejection(checkout(await context({ buildTimeout: 60, pollInterval: 20 }), { hostgroup: 'base/rhel9' }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toMatch(/buildTimeout.*Pending installation.*deleted/);
    expect(fake.hosts.size).toBe(0);
  });

  it('keeps polling through 5xx and dropped connections', async () => {
    fake.faults.push(
      { method: 'GET', path: /^\/api\/hosts\/\d+$/, status: 503, times: 2 },
      { method: 'GET', path: /^\/api\/hosts\/\d+$/, status: 0, drop: true, times: 1 },
    );
    const { host } = await checkout(await context({ retries: 0 }), { hostgroup: 'base/rhel9' });
    expect(host.hostname).toBe('web-0.example.test');
  });

  it('checks out N hosts concurrently', async () => {
    const ctx = await context();
    const hosts = await Promise.all([0, 1, 2, 3].map((i) => checkout(ctx, { hostgroup: 'base/rhel9' }, i)));
    expect(new Set(hosts.map((h) => h.host.hostname)).size).toBe(4);
    expect(fake.hosts.size).toBe(4);
  });
});

describe('foreman errors', () => {
  it("carries Foreman's validation messages (422)", async () => {
    await checkout(await context(), { hostgroup: 'base/rhel9', name: 'dup' });
    const error = await rejection(checkout(await context(), { hostgroup: 'base/rhel9', name: 'dup' }));
    expect((error as ProviderError).status).toBe(422);
    expect(error.message).toContain('Name has already been taken');
  });

  it("carries Foreman's message for 401 and 403, never the password", async () => {
    const bad = await rejection(checkout(await context({ password: 'wrong-password-42' }), { hostgroup: 'base/rhel9' }));
    expect((bad as ProviderError).status).toBe(401);
    expect(bad.message).toContain('Unable to authenticate user jdoe');
    expect(bad.message).not.toContain('wrong-password-42');
    fake.canCreate = false;
    const denied = await rejection(checkout(await context(), { hostgroup: 'base/rhel9' }));
    expect((denied as ProviderError).status).toBe(403);
    expect(denied.message).toContain('Missing one of the required permissions: create_hosts');
  });

  it('names an unknown hostgroup', async () => {
    const error = await rejection(checkout(await context(), { hostgroup: 'base/nope' }));
    expect(error).toBeInstanceOf(UserInputError);
    expect(error.message).toContain('base/nope');
  });

  it('turns a malformed answer into a ProviderError', async () => {
    fake.faults.push({ method: 'POST', path: /^\/api\/hosts$/, status: 201, body: { id: 'seven' } });
    const error = await rejection(checkout(await context(), { hostgroup: 'base/rhel9' }));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toMatch(/unexpected shape.*id/);
  });

  it('does not create twice when the create answers 5xx', async () => {
    fake.faults.push({ method: 'POST', path: /^\/api\/hosts$/, status: 500 });
    const error = await rejection(checkout(await context(), { hostgroup: 'base/rhel9' }));
    expect((error as ProviderError).retryable).toBe(true);
    expect(error.message).toContain('unable to finish the request');
    expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
  });

  it('needs a password, and keeps it out of records, logs and errors', async () => {
    expect(await rejection(checkout(await context({ password: undefined }), { hostgroup: 'base/rhel9' }))).toBeInstanceOf(SettingsError);
    process.env.HB_TEST_FOREMAN_PW = fake.password;
    await checkout(await context({ password: undefined, passwordEnv: 'HB_TEST_FOREMAN_PW' }), { hostgroup: 'base/rhel9' });
    fake.faults.push({ method: 'POST', path: /^\/api\/hosts$/, status: 500, body: { error: { message: `echo ${fake.password}` } } });
    const echoed = await rejection(checkout(await context(), { hostgroup: 'base/rhel9' }, 1));
    delete process.env.HB_TEST_FOREMAN_PW;
    const basic = Buffer.from(`${fake.username}:${fake.password}`).toString('base64');
    for (const text of [records(), logLines().join('\n'), echoed.message]) {
      expect(text).not.toContain(fake.password);
      expect(text).not.toContain(basic);
    }
  });
});

describe('foreman checkin, sync, help', () => {
  it('deletes the host on checkin; already gone is fine', async () => {
    const ctx = await context();
    const { host, record } = await checkout(ctx, { hostgroup: 'base/rhel9' });
    const ready = { ...stored(ctx, record), providerId: host.providerId!, state: 'ready' as const };
    await impl.release(ready, testHostContext(ctx, ready));
    expect(fake.hosts.size).toBe(0);
    await impl.release(ready, testHostContext(ctx, ready));
    expect(fake.requests.filter((r) => r.method === 'DELETE')).toHaveLength(2);
  });

  it('syncs the hosts the user owns, with their tags', async () => {
    fake.addHost({
      name: 'mine',
      owner: 'jdoe',
      hostgroup: rhel9,
      parameters: { 'hostbroker.id': 'rec-1', 'hostbroker.broker': 'broker-1', 'hostbroker.owner': 'jdoe' },
    });
    fake.addHost({ name: 'untagged', owner: 'jdoe', hostgroup: rhel9 });
    fake.addHost({ name: 'theirs', owner: 'asmith', hostgroup: rhel9 });
    const hosts = await impl.discover!((await context({ perPage: 1 })).ctx);
    expect(hosts.map((h) => h.name).sort()).toEqual(['mine.example.test', 'untagged.example.test']);
    expect(hosts.find((h) => h.name === 'mine.example.test')).toMatchObject({
      id: 'rec-1',
      brokerId: 'broker-1',
      owner: 'jdoe',
      createdAt: '2026-01-02T03:04:05.000Z',
      recipe: { args: { hostgroup: 'base/rhel9' } },
    });
    expect(hosts.find((h) => h.name === 'untagged.example.test')!.id).toBeUndefined();
  });

  it('lists hostgroups as help', async () => {
    expect(await impl.describe!((await context()).ctx)).toEqual({ hostgroups: ['base', 'base/rhel9', 'base/broken'] });
  });
});

describe('foreman through the Broker', () => {
  it('a failed build with dangling: keep leaves the host in the inventory marked kept, and checkin deletes it', async () => {
    const { Broker } = await import('../../lib/broker/index.js');
    const broker = new Broker({
      directory: dir,
      settings: { logLevel: 'silent', foreman: { baseUrl: fake.url, username: fake.username, password: fake.password, pollInterval: 5, retryDelay: 5 } },
    });
    try {
      const error = await rejection(broker.checkout({ provider: 'foreman', hostgroup: 'base/broken', dangling: 'keep', waitForSsh: false }));
      expect(error.message).toContain('Installation error');
      const [made] = [...fake.hosts.values()];
      const records = await broker.inventory();
      expect(records.map((r) => [r.name, r.providerId, r.state])).toEqual([[made!.name, String(made!.id), 'ready']]);
      expect(records[0]!.kept?.reason).toContain('Installation error');
      await broker.checkin({ all: true });
      expect(fake.hosts.size).toBe(0);
      expect(await broker.inventory()).toEqual([]);
    } finally {
      await broker.close();
    }
  });
});
