/**
 * mrprovisioner provider against a fake mr-provisioner server (test/helpers/fake-mrprovisioner.ts)
 * that follows the documented REST API v1. No real mr-provisioner can run here.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type BrokerError, ProviderError, SettingsError } from '../../lib/errors.js';
import { reapable } from '../../lib/broker/reap-rule.js';
import type { ImplementationOf, ProviderContext } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { mrprovisioner, MrProvisionerArgs, type MrProvisionerInstance } from '../../providers/mrprovisioner/definition.js';
import { parseReason, tagReason } from '../../providers/mrprovisioner/provider.js';
import { FakeMrProvisioner, at, on, providerTestContext, target } from '../helpers/fake-mrprovisioner.js';

const TOKEN = 'mrp-secret-token-0123456789';
let fake: FakeMrProvisioner;
let impl: ImplementationOf<typeof mrprovisioner>;
let ctx: ProviderContext<MrProvisionerInstance>;
let logs: string[];
let cleanup: () => Promise<void>;

beforeEach(async () => {
  fake = await new FakeMrProvisioner().start();
  fake.tokens.set(TOKEN, 'alice');
  fake.addMachine({ name: 'm1', attrs: { arch: 'aarch64' } });
  fake.addMachine({ name: 'm2', attrs: { arch: 'aarch64' } });
  fake.addMachine({ name: 'm3', attrs: { arch: 'x86_64' } });
  fake.addImage({ name: 'alice/vmlinuz.0a1b2c3d', type: 'Kernel', user: 'alice' });
  fake.addImage({ name: 'alice/vmlinuz.ffffffff', type: 'Kernel', user: 'alice', description: 'newer' });
  fake.addImage({ name: 'alice/initrd.gz.12345678', type: 'Initrd', user: 'alice' });
  fake.preseeds.push({ id: 77, name: 'debian-auto', description: null, type: 'preseed', user: 'alice', content: 'd-i ...' });
  impl = await mrprovisioner.load();
  ({ ctx, logs, cleanup } = await providerTestContext(mrprovisioner, { url: fake.url, token: TOKEN, retries: 1 }));
});

afterEach(async () => {
  await fake.stop();
  await cleanup();
});

const args = (a: Record<string, unknown> = {}) => MrProvisionerArgs.parse(a);

function expectNoSecret(...texts: unknown[]) {
  for (const t of texts) expect(JSON.stringify(t) ?? '').not.toContain(TOKEN);
}

describe('checkout', () => {
  it('reserves a machine matching the query, configures and provisions it, and tags the reservation', async () => {
    const t = target('mrprovisioner');
    const host = await impl.checkout(
      args({ query: 'arch=x86_64', kernel: 'vmlinuz', initrd: 'initrd.gz', preseed: 'debian-auto', kernelOptions: 'console=ttyS0' }),
      ...at(ctx, t),
    );
    const m3 = fake.machines.find((m) => m.name === 'm3')!;
    expect(host.hostname).toBe('m3.lab.example');
    expect(host.providerId).toBe(String(m3.id));
    expect(host.connection).toMatchObject({ kind: 'ssh', host: 'm3.lab.example', username: 'root' });
    // The newest image of that name wins.
    expect(m3.kernel_id).toBe(fake.images[1]!.id);
    expect(m3.initrd_id).toBe(fake.images[2]!.id);
    expect(m3.preseed_id).toBe(77);
    expect(m3.kernel_opts).toBe('console=ttyS0');
    expect(m3.state).toBe('provisioning');
    expect(m3.assignments).toHaveLength(1);
    expect(parseReason(m3.assignments[0]!.reason)).toEqual({ id: t.record.id, brokerId: 'broker-test-1' });
    // Bearer token on every request.
    expect(fake.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expectNoSecret(host, logs);
  });

  it('uses the interface IPv4 when asked, and only reserves without a kernel', async () => {
    const host = await impl.checkout(args({ query: 'name=m2', address: 'ipv4' }), ...at(ctx, target('mrprovisioner')));
    const m2 = fake.machines.find((m) => m.name === 'm2')!;
    expect(host.hostname).toBe(m2.interfaces[0]!.lease_ipv4);
    expect(m2.state).toBe('unknown');
    expect(fake.requests.some((r) => r.path.endsWith('/state'))).toBe(false);
  });

  it('powers the machine on when asked and not provisioning', async () => {
    await impl.checkout(args({ query: 'name=m1', power: 'on' }), ...at(ctx, target('mrprovisioner')));
    expect(fake.machines[0]!.power).toBe('on');
  });

  it('fails with the service message and a retryable error when no machine is free', async () => {
    const err = await impl.checkout(args({ query: 'arch=riscv64' }), ...at(ctx, target('mrprovisioner'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).retryable).toBe(true);
    expect((err as Error).message).toContain('no matching machine');
    expect((err as Error).message).toContain('arch=riscv64');
  });

  it('concurrent checkouts of N get N different machines, and the N+1th finds none free', async () => {
    const results = await Promise.allSettled([0, 1, 2, 3].map(() => impl.checkout(args(), ...at(ctx, target('mrprovisioner')))));
    const ok = results.filter((r): r is PromiseFulfilledResult<Awaited<ReturnType<typeof impl.checkout>>> => r.status === 'fulfilled');
    expect(ok).toHaveLength(3);
    expect(new Set(ok.map((r) => r.value.providerId)).size).toBe(3);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
  });

  it('gives the machine back when configuration fails after the reservation', async () => {
    const err = await impl.checkout(args({ query: 'name=m1', kernel: 'no-such-kernel' }), ...at(ctx, target('mrprovisioner'))).catch((e: unknown) => e);
    expect((err as Error).message).toContain('no kernel named "no-such-kernel"');
    expect(fake.machines[0]!.assignments).toHaveLength(0);
  });

  it('carries the service message of a 400 (provisioning without a BMC)', async () => {
    fake.machines[0]!.bmc = false;
    const err = await impl.checkout(args({ query: 'name=m1', kernel: 'vmlinuz' }), ...at(ctx, target('mrprovisioner'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).status).toBe(400);
    expect((err as Error).message).toContain('provisioning requires a BMC');
    expect(fake.machines[0]!.assignments).toHaveLength(0);
  });

  it('says what to do on 401 without leaking the token', async () => {
    fake.tokens.clear();
    const err = await impl.checkout(args(), ...at(ctx, target('mrprovisioner'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).status).toBe(401);
    expect((err as Error).message).toMatch(/credentials.*token/);
    expectNoSecret((err as Error).message, (err as BrokerError).toJSON(), logs);
  });

  it('reports 403 with its message', async () => {
    fake.fail('POST', /^\/machine\/reservation$/, 403, { error_type: 'InvalidUsage', errors: ['Forbidden: account disabled'] });
    const err = await impl.checkout(args(), ...at(ctx, target('mrprovisioner'))).catch((e: unknown) => e);
    expect((err as ProviderError).status).toBe(403);
    expect((err as Error).message).toContain('Forbidden: account disabled');
  });

  it('does not repeat a reservation after a 5xx (it may have reserved), but retries GETs', async () => {
    fake.fail('POST', /^\/machine\/reservation$/, 502, 'Bad Gateway');
    const err = await impl.checkout(args(), ...at(ctx, target('mrprovisioner'))).catch((e: unknown) => e);
    expect((err as ProviderError).status).toBe(502);
    expect((err as ProviderError).retryable).toBe(true);
    expect(fake.requests.filter((r) => r.path === '/machine/reservation')).toHaveLength(1);

    fake.fail('GET', /^\/image$/, 503, { error_type: 'Error', errors: ['db busy'] });
    const host = await impl.checkout(args({ kernel: 'vmlinuz' }), ...at(ctx, target('mrprovisioner')));
    expect(host.hostname).toMatch(/lab\.example$/);
  });

  it('turns a malformed answer into a ProviderError that names the response', async () => {
    fake.malformed.push(/^\/machine\/reservation$/);
    const err = await impl.checkout(args(), ...at(ctx, target('mrprovisioner'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as Error).message).toMatch(/unexpected shape \(response\.id/);
  });

  it('needs a token, and says where to put it', async () => {
    const { ctx: noToken, cleanup: c } = await providerTestContext(mrprovisioner, { url: fake.url, tokenEnv: 'HB_TEST_NO_SUCH_VAR' });
    await expect(impl.checkout(args(), ...at(noToken, target('mrprovisioner')))).rejects.toThrow(SettingsError);
    await expect(impl.checkout(args(), ...at(noToken, target('mrprovisioner')))).rejects.toThrow(/HB_TEST_NO_SUCH_VAR/);
    await c();
  });

  it('reads the token from the environment variable named by tokenEnv', async () => {
    process.env.HB_TEST_MRP_TOKEN = TOKEN;
    const { ctx: envCtx, cleanup: c } = await providerTestContext(mrprovisioner, { url: fake.url, tokenEnv: 'HB_TEST_MRP_TOKEN' });
    try {
      const host = await impl.checkout(args(), ...at(envCtx, target('mrprovisioner')));
      expect(host.providerId).toBeDefined();
    } finally {
      delete process.env.HB_TEST_MRP_TOKEN;
      await c();
    }
  });
});

describe('release', () => {
  async function checkedOut(a: Record<string, unknown> = {}): Promise<HostRecord> {
    const t = target('mrprovisioner');
    const host = await impl.checkout(args(a), ...at(ctx, t));
    return { ...t.record, state: 'ready', hostname: host.hostname, providerId: host.providerId };
  }

  it('powers off and unassigns; a second release is a no-op', async () => {
    const record = await checkedOut({ query: 'name=m1', power: 'on' });
    await impl.release(record, on(ctx, record));
    expect(fake.machines[0]!.power).toBe('off');
    expect(fake.machines[0]!.assignments).toHaveLength(0);
    const before = fake.requests.length;
    await impl.release(record, on(ctx, record));
    expect(fake.requests.slice(before).some((r) => r.method !== 'GET')).toBe(false);
  });

  it('leaves power alone when powerOffOnRelease is false', async () => {
    const { ctx: keep, cleanup: c } = await providerTestContext(mrprovisioner, { url: fake.url, token: TOKEN, powerOffOnRelease: false });
    const t = target('mrprovisioner');
    const host = await impl.checkout(args({ query: 'name=m1', power: 'on' }), ...at(keep, t));
    await impl.release({ ...t.record, providerId: host.providerId }, on(keep, { ...t.record, providerId: host.providerId }));
    expect(fake.machines[0]!.power).toBe('on');
    expect(fake.machines[0]!.assignments).toHaveLength(0);
    await c();
  });

  it('finds the machine by the record tag when the record is still provisioning', async () => {
    const t = target('mrprovisioner');
    await impl.checkout(args({ query: 'name=m2' }), ...at(ctx, t));
    await impl.release(t.record, on(ctx, t.record)); // no providerId
    expect(fake.machines[1]!.assignments).toHaveLength(0);
  });

  it('still gives the machine back when power-off fails (no BMC)', async () => {
    const record = await checkedOut({ query: 'name=m1' });
    fake.machines[0]!.bmc = false;
    await impl.release(record, on(ctx, record));
    expect(fake.machines[0]!.assignments).toHaveLength(0);
    expect(logs.join('\n')).toContain('power state changes require a BMC');
  });

  it('does not touch a machine now reserved for another record', async () => {
    const record = await checkedOut({ query: 'name=m1' });
    await impl.release(record, on(ctx, record));
    const other = await checkedOut({ query: 'name=m1' });
    await impl.release(record, on(ctx, record)); // stale providerId points at m1
    expect(fake.machines[0]!.assignments).toHaveLength(1);
    expect(parseReason(fake.machines[0]!.assignments[0]!.reason)?.id).toBe(other.id);
  });

  it('treats a deleted machine as released', async () => {
    const record = await checkedOut({ query: 'name=m1' });
    fake.machines.splice(0, 1);
    await expect(impl.release(record, on(ctx, record))).resolves.toBeUndefined();
    expect(fake.requests.at(-1)).toMatchObject({ method: 'GET', path: `/machine/${record.providerId}/assignee/self` });
    // A record without providerId whose machine vanished: nothing to do.
    await expect(impl.release({ ...record, providerId: undefined }, on(ctx, { ...record, providerId: undefined }))).resolves.toBeUndefined();
  });
});

describe('inventory (for sync and reap)', () => {
  it('lists machines assigned to the user that carry this broker tag', async () => {
    const t1 = target('mrprovisioner');
    await impl.checkout(args({ query: 'name=m1' }), ...at(ctx, t1));
    // A machine the user reserved by hand, and one reserved by another broker.
    fake.machines[1]!.assignments.push({ id: 1, user: 'alice', reason: 'manual testing' });
    fake.machines[2]!.assignments.push({ id: 2, user: 'alice', reason: tagReason({ id: 'x', brokerId: 'other-broker' }) });
    const found = await impl.discover!(ctx);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ id: t1.record.id, brokerId: 'broker-test-1', hostname: 'm1.lab.example', providerId: String(fake.machines[0]!.id) });
  });

  it('reports what the reap rule needs: tagged machines whose record is gone are picked, and release gives them back', async () => {
    const keep = target('mrprovisioner');
    const lost = target('mrprovisioner');
    await impl.checkout(args({ query: 'name=m1' }), ...at(ctx, keep));
    await impl.checkout(args({ query: 'name=m2' }), ...at(ctx, lost));
    const doomed = reapable(await impl.discover!(ctx), { brokerId: 'broker-test-1', isKnown: (id) => id === keep.record.id, now: Date.now(), graceMs: 0 });
    expect(doomed.map((d) => d.host.id)).toEqual([lost.record.id]);
    for (const { host } of doomed) await impl.release({ ...lost.record, providerId: host.providerId }, on(ctx, lost));
    expect(fake.machines[0]!.assignments).toHaveLength(1);
    expect(fake.machines[1]!.assignments).toHaveLength(0);
  });
});

describe('actions', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-mrp-img-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('upload-image sends the file and metadata as multipart and returns the image', async () => {
    const file = join(dir, 'vmlinuz-6.9');
    await writeFile(file, Buffer.from([0, 1, 2, 255, 13, 10, 45, 45]));
    const image = (await impl.actions!['upload-image']({ path: file, type: 'Kernel', description: 'test kernel', knownGood: true }, ctx)) as {
      id: number;
      name: string;
      type: string;
    };
    expect(image.type).toBe('Kernel');
    expect(image.name).toMatch(/^alice\/vmlinuz-6\.9\./);
    const stored = fake.images.find((i) => i.id === image.id)!;
    expect(stored.content).toEqual(Buffer.from([0, 1, 2, 255, 13, 10, 45, 45]));
    expect(stored.description).toBe('test kernel');
    expect(stored.known_good).toBe(true);
    // The uploaded kernel can be used by name right away.
    const host = await impl.checkout(args({ query: 'name=m1', kernel: 'vmlinuz-6.9' }), ...at(ctx, target('mrprovisioner')));
    expect(fake.machines[0]!.kernel_id).toBe(image.id);
    expect(host.data?.kernelId).toBe(image.id);
  });

  it('upload-image of a missing file says which path', async () => {
    await expect(impl.actions!['upload-image']({ path: join(dir, 'nope'), type: 'Kernel' }, ctx)).rejects.toThrow(/cannot read the image file .*nope/);
  });

  it('power acts on a machine assigned to the user only', async () => {
    await impl.checkout(args({ query: 'name=m1' }), ...at(ctx, target('mrprovisioner')));
    await impl.actions!.power({ machine: 'm1', state: 'reboot' }, ctx);
    expect(fake.machines[0]!.power).toBe('reboot');
    await expect(impl.actions!.power({ machine: 'm2', state: 'on' }, ctx)).rejects.toThrow(/not assigned to you/);
  });

  it('describe lists machines, images and preseeds', async () => {
    const d = await impl.describe!(ctx);
    expect((d.machines as unknown[]).length).toBe(3);
    expect((d.images as unknown[]).length).toBe(3);
    expect(d.preseeds).toEqual([expect.objectContaining({ id: 77, name: 'debian-auto' })]);
  });
});

describe('tags', () => {
  it('fit in the 140-character reason and round-trip', () => {
    const reason = tagReason({ id: 'a'.repeat(36), brokerId: 'b'.repeat(36) }, 'x'.repeat(100));
    expect(reason.length).toBeLessThanOrEqual(140);
    expect(parseReason(reason)).toEqual({ id: 'a'.repeat(36), brokerId: 'b'.repeat(36) });
    expect(parseReason('manual')).toBeUndefined();
  });
});
