/**
 * The `foreman` provider against a fake Foreman server (test/helpers/fake-foreman.ts) that
 * follows the documented REST API v2. No real Foreman can run here.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError, SettingsError, TimeoutError, UserInputError } from '../../lib/errors.js';
import { Inventory } from '../../lib/inventory/index.js';
import { createLogger } from '../../lib/logger.js';
import type { CheckoutTarget, ProviderContext } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { parseSettings } from '../../lib/settings.js';
import { foreman } from '../../providers/foreman/definition.js';
import impl from '../../providers/foreman/provider.js';
import { FakeForeman, type FakeHostgroup } from '../helpers/fake-foreman.js';
import { rejection } from '../helpers/rejection.js';

let fake: FakeForeman;
let dir: string;
let logLines: string[];
let rhel9: FakeHostgroup;

beforeEach(async () => {
  fake = await FakeForeman.start();
  dir = await mkdtemp(join(tmpdir(), 'hb-foreman-'));
  logLines = [];
  fake.addHostgroup({ title: 'base' });
  rhel9 = fake.addHostgroup({ title: 'base/rhel9', polls: 2 });
  fake.addHostgroup({ title: 'base/broken', outcome: 'failed' });
});

afterEach(async () => {
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

function context(instance: Record<string, unknown> = {}): ProviderContext {
  return {
    provider: 'foreman',
    instance: 'default',
    instanceSettings: { baseUrl: fake.url, username: fake.username, password: fake.password, pollInterval: 5, retryDelay: 5, requestTimeout: '5s', ...instance },
    settings: parseSettings({}, ['foreman']),
    directory: dir,
    brokerId: 'broker-1',
    owner: 'jdoe',
    logger: createLogger('debug', (line) => logLines.push(line)),
    inventory: new Inventory(dir),
    signal: new AbortController().signal,
  };
}

async function target(ctx: ProviderContext, args: Record<string, unknown>, index = 0): Promise<CheckoutTarget> {
  const record: HostRecord = {
    id: randomUUID(),
    name: `Web_${index}`,
    hostname: '',
    provider: 'foreman',
    instance: 'default',
    state: 'provisioning',
    recipe: { provider: 'foreman', args },
    owner: 'jdoe',
    brokerId: 'broker-1',
    createdAt: new Date().toISOString(),
    data: {},
  };
  await ctx.inventory.add(record);
  return { record, index, count: 1 };
}

async function checkout(ctx: ProviderContext, raw: Record<string, unknown>, index = 0) {
  const t = await target(ctx, raw, index);
  return { host: await impl.checkout(foreman.args.parse(raw), t, ctx), record: t.record };
}

describe('foreman checkout', () => {
  it('creates a host in the hostgroup with build mode and tag parameters, and waits for the build', async () => {
    const ctx = context({ organizationId: 3 });
    const { host, record } = await checkout(ctx, { hostgroup: 'base/rhel9', parameters: { purpose: 'ci' } });
    expect(host).toMatchObject({ hostname: 'web-0.example.test', name: 'web-0.example.test', data: { hostgroup: 'base/rhel9', operatingsystem: 'RedHat 9.4' } });
    expect(host.connection).toMatchObject({ kind: 'ssh', host: 'web-0.example.test', username: 'root' });
    const made = fake.hosts.get(Number(host.providerId))!;
    expect(made.body).toMatchObject({ hostgroup_id: rhel9.id, build: true, organization_id: 3 });
    expect(Object.fromEntries(made.parameters.map((p) => [p.name, p.value]))).toMatchObject({ 'hostbroker.id': record.id, 'hostbroker.owner': 'jdoe', purpose: 'ci' });
    // At least one poll saw it pending before it was installed.
    expect(fake.requests.filter((r) => r.method === 'GET' && r.url === `/api/hosts/${made.id}`).length).toBeGreaterThanOrEqual(3);
    // The host id is noted at once, so a killed checkout can be released.
    expect((await ctx.inventory.get(record.id))!.providerId).toBe(String(made.id));
  });

  it('reaches hosts at their IP with address: ip, and resolves hostgroups by id', async () => {
    const { host } = await checkout(context({ address: 'ip' }), { hostgroup: rhel9.id, name: 'db1' });
    expect(host.hostname).toMatch(/^192\.0\.2\.\d+$/);
    expect(host.name).toBe('db1.example.test');
  });

  it('deletes a host whose build failed, and says so with Foreman\'s label', async () => {
    const ctx = context();
    const t = await target(ctx, { hostgroup: 'base/broken' });
    const error = await rejection(impl.checkout(foreman.args.parse({ hostgroup: 'base/broken' }), t, ctx));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toMatch(/Installation error; the host was deleted/);
    expect(fake.hosts.size).toBe(0);
    // Releasing the failed record afterwards sends no second delete.
    await impl.release(t.record, ctx);
    expect(fake.requests.filter((r) => r.method === 'DELETE')).toHaveLength(1);
  });

  it('keeps a host whose build failed with dangling: keep', async () => {
    const ctx = context();
    const t = await target(ctx, { hostgroup: 'base/broken', dangling: 'keep' });
    const error = await rejection(impl.checkout(foreman.args.parse({ hostgroup: 'base/broken', dangling: 'keep' }), t, ctx));
    expect(error.message).toMatch(/kept/);
    expect(fake.hosts.size).toBe(1);
    await impl.release(t.record, ctx);
    expect(fake.hosts.size).toBe(1);
    const kept = (await ctx.inventory.hosts()).find((h) => h.kept)!;
    expect(kept.kept!.reason).toContain('Installation error');
    await impl.release(kept, ctx);
    expect(fake.hosts.size).toBe(0);
  });

  it('gives up a slow build at buildTimeout and deletes the host', async () => {
    rhel9.polls = 10_000;
    const error = await rejection(checkout(context({ buildTimeout: 60, pollInterval: 20 }), { hostgroup: 'base/rhel9' }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toMatch(/buildTimeout.*Pending installation.*deleted/);
    expect(fake.hosts.size).toBe(0);
  });

  it('keeps polling through 5xx and dropped connections', async () => {
    fake.faults.push({ method: 'GET', path: /^\/api\/hosts\/\d+$/, status: 503, times: 2 }, { method: 'GET', path: /^\/api\/hosts\/\d+$/, status: 0, drop: true, times: 1 });
    const { host } = await checkout(context({ retries: 0 }), { hostgroup: 'base/rhel9' });
    expect(host.hostname).toBe('web-0.example.test');
  });

  it('checks out N hosts concurrently', async () => {
    const ctx = context();
    const hosts = await Promise.all([0, 1, 2, 3].map((i) => checkout(ctx, { hostgroup: 'base/rhel9' }, i)));
    expect(new Set(hosts.map((h) => h.host.hostname)).size).toBe(4);
    expect(fake.hosts.size).toBe(4);
  });
});

describe('foreman errors', () => {
  it('carries Foreman\'s validation messages (422)', async () => {
    await checkout(context(), { hostgroup: 'base/rhel9', name: 'dup' });
    const error = await rejection(checkout(context(), { hostgroup: 'base/rhel9', name: 'dup' }));
    expect((error as ProviderError).status).toBe(422);
    expect(error.message).toContain('Name has already been taken');
  });

  it('carries Foreman\'s message for 401 and 403, never the password', async () => {
    const bad = await rejection(checkout(context({ password: 'wrong-password-42' }), { hostgroup: 'base/rhel9' }));
    expect((bad as ProviderError).status).toBe(401);
    expect(bad.message).toContain('Unable to authenticate user jdoe');
    expect(bad.message).not.toContain('wrong-password-42');
    fake.canCreate = false;
    const denied = await rejection(checkout(context(), { hostgroup: 'base/rhel9' }));
    expect((denied as ProviderError).status).toBe(403);
    expect(denied.message).toContain('Missing one of the required permissions: create_hosts');
  });

  it('names an unknown hostgroup', async () => {
    const error = await rejection(checkout(context(), { hostgroup: 'base/nope' }));
    expect(error).toBeInstanceOf(UserInputError);
    expect(error.message).toContain('base/nope');
  });

  it('turns a malformed answer into a ProviderError', async () => {
    fake.faults.push({ method: 'POST', path: /^\/api\/hosts$/, status: 201, body: { id: 'seven' } });
    const error = await rejection(checkout(context(), { hostgroup: 'base/rhel9' }));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toMatch(/unexpected shape.*id/);
  });

  it('does not create twice when the create answers 5xx', async () => {
    fake.faults.push({ method: 'POST', path: /^\/api\/hosts$/, status: 500 });
    const error = await rejection(checkout(context(), { hostgroup: 'base/rhel9' }));
    expect((error as ProviderError).retryable).toBe(true);
    expect(error.message).toContain('unable to finish the request');
    expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
  });

  it('needs a password, and keeps it out of records, logs and errors', async () => {
    expect(await rejection(checkout(context({ password: undefined }), { hostgroup: 'base/rhel9' }))).toBeInstanceOf(SettingsError);
    process.env.HB_TEST_FOREMAN_PW = fake.password;
    await checkout(context({ password: undefined, passwordEnv: 'HB_TEST_FOREMAN_PW' }), { hostgroup: 'base/rhel9' });
    fake.faults.push({ method: 'POST', path: /^\/api\/hosts$/, status: 500, body: { error: { message: `echo ${fake.password}` } } });
    const echoed = await rejection(checkout(context(), { hostgroup: 'base/rhel9' }, 1));
    delete process.env.HB_TEST_FOREMAN_PW;
    const basic = Buffer.from(`${fake.username}:${fake.password}`).toString('base64');
    for (const text of [await readFile(join(dir, 'inventory.json'), 'utf8'), logLines.join('\n'), echoed.message]) {
      expect(text).not.toContain(fake.password);
      expect(text).not.toContain(basic);
    }
  });
});

describe('foreman checkin, sync, help', () => {
  it('deletes the host on checkin; already gone is fine', async () => {
    const ctx = context();
    const { host, record } = await checkout(ctx, { hostgroup: 'base/rhel9' });
    const ready = { ...record, providerId: host.providerId!, state: 'ready' as const };
    await impl.release(ready, ctx);
    expect(fake.hosts.size).toBe(0);
    await impl.release(ready, ctx);
    expect(fake.requests.filter((r) => r.method === 'DELETE')).toHaveLength(2);
  });

  it('finds a host by its record-id parameter when the record never got the host id', async () => {
    const ctx = context();
    const t = await target(ctx, { hostgroup: 'base/rhel9' });
    await impl.checkout(foreman.args.parse({ hostgroup: 'base/rhel9' }), t, ctx);
    const other = fake.addHost({ name: 'someone-elses', owner: 'jdoe', hostgroup: rhel9, parameters: { 'hostbroker.id': 'another-record' } });
    await ctx.inventory.patch(t.record.id, { providerId: undefined, data: {} });
    await impl.release(t.record, ctx);
    expect([...fake.hosts.keys()]).toEqual([other.id]);
  });

  it('syncs the hosts the user owns, with their tags', async () => {
    fake.addHost({ name: 'mine', owner: 'jdoe', hostgroup: rhel9, parameters: { 'hostbroker.id': 'rec-1', 'hostbroker.broker': 'broker-1', 'hostbroker.owner': 'jdoe' } });
    fake.addHost({ name: 'untagged', owner: 'jdoe', hostgroup: rhel9 });
    fake.addHost({ name: 'theirs', owner: 'asmith', hostgroup: rhel9 });
    const hosts = await impl.inventory!(context({ perPage: 1 }));
    expect(hosts.map((h) => h.name).sort()).toEqual(['mine.example.test', 'untagged.example.test']);
    expect(hosts.find((h) => h.name === 'mine.example.test')).toMatchObject({ id: 'rec-1', brokerId: 'broker-1', owner: 'jdoe', createdAt: '2026-01-02T03:04:05.000Z', recipe: { args: { hostgroup: 'base/rhel9' } } });
    expect(hosts.find((h) => h.name === 'untagged.example.test')!.id).toBeUndefined();
  });

  it('lists hostgroups as help', async () => {
    expect(await impl.describe!(context())).toEqual({ hostgroups: ['base', 'base/rhel9', 'base/broken'] });
  });
});
