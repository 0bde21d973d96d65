/**
 * The openstack provider against FakeOpenStack (test/helpers/openstack-cloud.ts), a node:http
 * server that follows the documented Keystone v3, Nova, Glance and Neutron APIs. No real cloud is
 * reachable from CI, so this is the closest real thing: real HTTP, real JSON, the services' shapes.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerError, ProviderError } from '../../lib/errors.js';
import { reapable } from '../../lib/broker/reap-rule.js';
import { TAGS } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { openstack } from '../../providers/openstack/definition.js';
import { createOpenStackProvider } from '../../providers/openstack/provider.js';
import { FakeOpenStack, IMAGES, NETWORKS } from '../helpers/openstack-cloud.js';
import type { TestContext } from '../../lib/testing/index.js';
import type { OpenStackInstance } from '../../providers/openstack/definition.js';
import { fakeInstance, newRecord, on, openstackContext, targets } from '../helpers/openstack-context.js';
import { rejection } from '../helpers/rejection.js';

let cloud: FakeOpenStack;
let clock: number;
let t: TestContext<OpenStackInstance> | undefined;
const now = () => clock;

beforeEach(async () => {
  clock = Date.now();
  cloud = await FakeOpenStack.start({ now });
});
afterEach(async () => {
  await cloud.close();
  await t?.cleanup();
  t = undefined;
});

function provider() {
  // No OS_* variables or clouds.yaml of this machine may leak in.
  return createOpenStackProvider({ sources: { env: {}, cwd: '/nonexistent', home: '/nonexistent' }, now });
}

async function context(extra: Record<string, unknown> = {}, options: { brokerId?: string; signal?: AbortSignal } = {}) {
  t = await openstackContext(fakeInstance(cloud, extra), options);
  return t.ctx;
}

/** One checkout target and its host context, as the Broker passes them. */
function one() {
  const [target] = targets(t!, 1);
  return [target!, on(t!, target!)] as const;
}

function args(extra: Record<string, unknown> = {}) {
  return openstack.args.parse(extra);
}

describe('checkout', () => {
  it('creates one server tagged with the record, and returns how to reach it', async () => {
    const ctx = await context({ keyName: 'ci-key', configDrive: true });
    cloud.keypairs.set('ci-key', 'ssh-ed25519 AAAA test');
    const impl = provider();
    const [target] = targets(t!, 1);
    const host = await impl.checkout(args({ userData: '#cloud-config\n{}', username: 'fedora' }), target!, on(t!, target!));

    expect(host.hostname).toMatch(/^10\.0\.0\.\d+$/);
    expect(host.connection).toMatchObject({ kind: 'ssh', host: host.hostname, port: 22, username: 'fedora' });
    const server = cloud.servers.get(host.providerId!)!;
    expect(server.status).toBe('ACTIVE');
    expect(server.name).toBe(target!.record.name);
    expect(server.metadata).toMatchObject({
      [TAGS.id]: target!.record.id,
      [TAGS.owner]: 'tester',
      [TAGS.broker]: ctx.brokerId,
      [TAGS.lease]: target!.record.leaseExpires,
      [TAGS.name]: target!.record.name,
    });
    expect(server.body).toMatchObject({
      imageRef: IMAGES[0]!.id,
      flavorRef: '1',
      networks: [{ uuid: NETWORKS[0]!.id }],
      key_name: 'ci-key',
      config_drive: true,
      user_data: Buffer.from('#cloud-config\n{}').toString('base64'),
    });
    expect(host.data).toMatchObject({ serverId: host.providerId, flavor: { name: 'm1.tiny' }, attempts: 1 });
  });

  it('checks out N hosts concurrently with one token, one quota check and one lookup of each name', async () => {
    await context();
    const impl = provider();
    const hosts = await Promise.all(targets(t!, 4).map((target) => impl.checkout(args(), target, on(t!, target))));

    expect(new Set(hosts.map((h) => h.providerId)).size).toBe(4);
    expect(new Set(hosts.map((h) => h.hostname)).size).toBe(4);
    expect([...cloud.servers.values()].every((s) => s.status === 'ACTIVE')).toBe(true);
    expect(cloud.authCount).toBe(1);
    expect(cloud.count(/^GET .*\/limits$/)).toBe(1);
    expect(cloud.count(/^GET \/image\/v2\/images\?name=/)).toBe(1);
    expect(cloud.count(/^GET .*\/flavors\/detail/)).toBe(1);
  });

  it('resolves image, flavor and network given by id', async () => {
    await context({ image: undefined, flavor: undefined, network: undefined });
    const host = await provider().checkout(args({ image: IMAGES[1]!.id, flavor: '3', network: NETWORKS[0]!.id }), ...one());
    expect(cloud.servers.get(host.providerId!)!.body).toMatchObject({ imageRef: IMAGES[1]!.id, flavorRef: '3', networks: [{ uuid: NETWORKS[0]!.id }] });
  });

  it('says what is missing or unknown, with what exists', async () => {
    await context({ image: undefined });
    const impl = provider();
    const [target] = targets(t!, 1);
    expect((await rejection<ProviderError>(impl.checkout(args(), target!, on(t!, target!)))).message).toMatch(/no image; pass `image`/);
    expect((await rejection<ProviderError>(impl.checkout(args({ image: 'nope' }), target!, on(t!, target!)))).message).toMatch(
      /Glance has no active image `nope`/,
    );
    // An id Glance does not know (its 404 is plain text) falls back to a name lookup.
    const unknownId = '11111111-2222-4333-8444-555555555555';
    expect((await rejection<ProviderError>(impl.checkout(args({ image: unknownId }), target!, on(t!, target!)))).message).toContain(
      `Glance has no active image \`${unknownId}\``,
    );
    expect((await rejection<ProviderError>(impl.checkout(args({ image: 'twin' }), target!, on(t!, target!)))).message).toMatch(
      /2 active images named `twin`.*pass `image` by id/,
    );
    const noFlavor = await rejection<ProviderError>(impl.checkout(args({ image: 'cirros-0.6.2', flavor: 'm9.huge' }), target!, on(t!, target!)));
    expect(noFlavor.message).toMatch(/no flavor `m9.huge`; available: m1.tiny, m1.small, m1.medium/);
    const noNet = await rejection<ProviderError>(impl.checkout(args({ image: 'cirros-0.6.2', network: 'lab' }), target!, on(t!, target!)));
    expect(noNet.message).toMatch(/no network `lab`; available: private, public/);
    expect(cloud.count(/^POST .*\/servers$/)).toBe(0);
  });

  it('imports a missing key pair from publicKeyPath once, and carries Nova’s message for a bad key name', async () => {
    await context();
    const impl = provider();
    const { writeFile } = await import('node:fs/promises');
    const pub = `${t!.directory}/id.pub`;
    await writeFile(pub, 'ssh-ed25519 AAAAC3Nza test@host\n');
    await Promise.all(targets(t!, 2).map((target) => impl.checkout(args({ keyName: 'hb', publicKeyPath: pub }), target, on(t!, target))));
    expect(cloud.keypairs.get('hb')).toBe('ssh-ed25519 AAAAC3Nza test@host');
    expect(cloud.count(/^POST .*\/os-keypairs$/)).toBe(1);

    const bad = await rejection<ProviderError>(impl.checkout(args({ keyName: 'missing' }), ...one()));
    expect(bad.message).toContain('Invalid key_name provided.');
    expect(bad.status).toBe(400);
  });

  it('allocates a floating IP, reaches the host there, and releases it with the server', async () => {
    await context({ floatingIp: true });
    const impl = provider();
    const [target] = targets(t!, 1);
    const host = await impl.checkout(args(), target!, on(t!, target!));
    expect(host.hostname).toMatch(/^172\.24\.4\.\d+$/);
    const fip = [...cloud.floatingIps.values()][0]!;
    expect(fip).toMatchObject({ floating_network_id: NETWORKS[1]!.id, floating_ip_address: host.hostname, description: `${TAGS.id}=${target!.record.id}` });
    await impl.release(ready(target!.record, host), on(t!, ready(target!.record, host)));
    expect(cloud.servers.size).toBe(0);
    expect(cloud.floatingIps.size).toBe(0);
  });
});

/** The record as the Broker stores it after checkout. */
function ready(record: HostRecord, host: { hostname: string; providerId?: string; data?: Record<string, unknown> }): HostRecord {
  return { ...record, state: 'ready', hostname: host.hostname, providerId: host.providerId, data: host.data ?? {} };
}

describe('Keystone tokens', () => {
  it('reuses one token for many calls and renews it near expiry', async () => {
    const ctx = await context();
    const impl = provider();
    await impl.checkout(args(), ...one());
    await impl.discover!(ctx);
    expect(cloud.authCount).toBe(1);
    const calls = cloud.requests.filter((r) => r.token).length;
    expect(calls).toBeGreaterThan(4);

    clock += 2 * 3600_000; // past the token's expiry
    await impl.discover!(ctx);
    expect(cloud.authCount).toBe(2);
  });

  it('gets a new token when a service answers 401, and goes on', async () => {
    const ctx = await context();
    const impl = provider();
    await impl.checkout(args(), ...one());
    cloud.revokeTokens();
    const found = await impl.discover!(ctx);
    expect(found).toHaveLength(1);
    expect(cloud.authCount).toBe(2);
  });

  it('fails with Keystone’s message when the credentials are wrong, without the password', async () => {
    await context({ auth: { ...(fakeInstance(cloud).auth as object), password: 'Wrong-Password-123' } });
    const error = await rejection<ProviderError>(provider().checkout(args(), ...one()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe(401);
    expect(error.message).toContain('The request you have made requires authentication.');
    expect(error.message).toMatch(/check the credentials in the openstack settings/);
    expect(error.message).not.toContain('Wrong-Password-123');
  });
});

describe('service errors', () => {
  it('carries Nova’s quota message on a 403', async () => {
    cloud.limits.instances = 1;
    await context();
    const impl = provider();
    await impl.checkout(args(), ...one());
    const error = await rejection<ProviderError>(impl.checkout(args(), ...one()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe(403);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('Quota exceeded for instances: Requested 1, but already used 1 of 1 instances');
    expect(error.message).toMatch(/quota/);
  });

  it('refuses a multi-host checkout that would exceed the quota before creating anything', async () => {
    cloud.limits.cores = 5;
    await context({ flavor: 'm1.medium' });
    const impl = provider();
    const results = await Promise.allSettled(targets(t!, 3).map((target) => impl.checkout(args(), target, on(t!, target))));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    const error = (results[0] as PromiseRejectedResult).reason as ProviderError;
    expect(error.status).toBe('QuotaExceeded');
    expect(error.message).toMatch(/cannot hold 3 more servers of flavor m1.medium: cores: needs 6, 5 free \(limit 5, used 0\)/);
    expect(cloud.count(/^POST .*\/servers$/)).toBe(0);
    expect(cloud.count(/^GET .*\/limits$/)).toBe(1);
  });

  it('a host that starts after a failed quota check checks again, for the hosts from its index on', async () => {
    cloud.limits.instances = 2;
    await context();
    const impl = provider();
    const batch = targets(t!, 3);
    const first = await Promise.allSettled(batch.slice(0, 2).map((target) => impl.checkout(args(), target, on(t!, target))));
    expect(first.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(((first[0] as PromiseRejectedResult).reason as Error).message).toMatch(/instances: needs 3, 2 free/);
    // The third host of the same checkout starts later (concurrency limit): it needs room for itself only.
    const host = await impl.checkout(args(), batch[2]!, on(t!, batch[2]!));
    expect(host.providerId).toBeDefined();
    expect(cloud.count(/^GET .*\/limits$/)).toBe(2);
  });

  it('retries a 500 on create, and does not make a second server when the first POST was done', async () => {
    await context();
    const impl = provider();
    const fault = { computeFault: { code: 500, message: 'Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/' } };
    cloud.failNext('POST', /\/servers$/, 500, fault);
    await impl.checkout(args(), ...one());
    expect(cloud.servers.size).toBe(1);

    cloud.failNext('POST', /\/servers$/, 500, fault, { afterProcessing: true });
    const host = await impl.checkout(args(), ...one());
    expect(cloud.servers.size).toBe(2);
    expect(cloud.servers.has(host.providerId!)).toBe(true);
  });

  it('retries 5xx and 429 on reads', async () => {
    await context();
    cloud.failNext('GET', /\/flavors\/detail$/, 503, { serviceUnavailable: { code: 503, message: 'busy' } });
    cloud.failNext('GET', /\/networks$/, 429, { NeutronError: { type: 'OverLimit', message: 'slow down', detail: '' } });
    const host = await provider().checkout(args(), ...one());
    expect(host.providerId).toBeDefined();
  });

  it('gives a clear, retryable error when the service keeps failing', async () => {
    await context({ httpRetries: 2 });
    cloud.failNext('POST', /\/servers$/, 500, { computeFault: { code: 500, message: 'Unexpected API Error.' } }, { times: 10 });
    const error = await rejection<ProviderError>(provider().checkout(args(), ...one()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe(500);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(
      /^\[openstack\] POST http:\/\/127\.0\.0\.1:\d+\/compute\/v2\.1\/\w+\/servers failed with HTTP 500: Unexpected API Error\. .*try again later/,
    );
    expect(cloud.count(/^POST .*\/servers$/)).toBe(3);
    expect(cloud.servers.size).toBe(0);
  });
});

describe('servers that go to ERROR', () => {
  const noHost = 'No valid host was found. There are not enough hosts available.';

  it('deletes the errored server and makes another', async () => {
    await context();
    cloud.errorFaults.push(noHost);
    const host = await provider().checkout(args(), ...one());
    expect(host.data).toMatchObject({ attempts: 2 });
    expect(cloud.deleted).toHaveLength(1);
    expect(cloud.servers.size).toBe(1);
    expect(t!.logLines.some((l) => l.includes(noHost))).toBe(true);
  });

  it('fails with Nova’s fault message after maxRetry, having deleted every errored server', async () => {
    await context({ maxRetry: 2 });
    cloud.errorFaults.push('fault one', 'fault two', noHost);
    const error = await rejection<ProviderError>(provider().checkout(args(), ...one()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe('ERROR');
    expect(error.message).toContain(`went to ERROR 3 time(s)`);
    expect(error.message).toContain(noHost);
    expect(cloud.count(/^POST .*\/servers$/)).toBe(3);
    expect(cloud.deleted).toHaveLength(3);
    expect(cloud.servers.size).toBe(0);
  });

  it('takes maxRetry from the arguments', async () => {
    await context({ maxRetry: 5 });
    cloud.errorFaults.push('a', 'b');
    await rejection<ProviderError>(provider().checkout(args({ maxRetry: 1 }), ...one()));
    expect(cloud.count(/^POST .*\/servers$/)).toBe(2);
  });

  it('deletes the server when the checkout is aborted while it builds', async () => {
    cloud.buildPolls = 1000;
    const controller = new AbortController();
    await context({}, { signal: controller.signal });
    const pending = provider().checkout(args(), ...one());
    while (cloud.count(/^GET .*\/servers\/[0-9a-f-]{36}$/) === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort(new Error('deadline'));
    const error = await rejection<ProviderError>(pending);
    expect(error.message).toMatch(/was cancelled/);
    expect(cloud.servers.size).toBe(0);
    expect(cloud.deleted).toHaveLength(1);
  });

  it('finds and deletes the server when the checkout is aborted before Nova’s answer to the create arrived', async () => {
    const controller = new AbortController();
    await context({}, { signal: controller.signal });
    cloud.delayNext('POST', /\/servers$/, 300);
    const pending = provider().checkout(args(), ...one());
    while (cloud.servers.size === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort(new Error('deadline'));
    await rejection<ProviderError>(pending);
    expect(cloud.servers.size).toBe(0);
    expect(cloud.deleted).toHaveLength(1);
  });

  it('deletes a server that does not become ACTIVE in time', async () => {
    cloud.buildPolls = 1000;
    await context({ activeTimeout: 30, pollInterval: 5 });
    const error = await rejection<ProviderError>(provider().checkout(args(), ...one()));
    expect(BrokerError.isInstance(error)).toBe(true);
    expect(error.message).toMatch(/did not become ACTIVE within .*still BUILD.*activeTimeout/);
    expect(cloud.servers.size).toBe(0);
  });
});

describe('release, extend, sync', () => {
  it('release is idempotent', async () => {
    await context();
    const impl = provider();
    const [target] = targets(t!, 1);
    const host = await impl.checkout(args(), target!, on(t!, target!));
    const record = ready(target!.record, host);
    await impl.release(record, on(t!, record));
    expect(cloud.servers.size).toBe(0);
    await expect(impl.release(record, on(t!, record))).resolves.toBeUndefined();
    expect(cloud.count(/^DELETE .*\/servers\//)).toBe(2);
  });

  it('releases the floating IP of a record still provisioning, found by its description', async () => {
    await context();
    const impl = provider();
    const [target] = targets(t!, 1, { floatingIp: true });
    await impl.checkout(args({ floatingIp: true }), target!, on(t!, target!));
    expect(cloud.floatingIps.size).toBe(1);
    await impl.release(target!.record, on(t!, target!.record));
    expect(cloud.servers.size).toBe(0);
    expect(cloud.floatingIps.size).toBe(0);
  });

  it('extend moves the lease in the server metadata', async () => {
    await context();
    const impl = provider();
    const [target] = targets(t!, 1);
    const host = await impl.checkout(args(), target!, on(t!, target!));
    const lease = new Date(Date.now() + 7200_000).toISOString();
    await impl.extend!(ready(target!.record, host), lease, on(t!, ready(target!.record, host)));
    expect(cloud.servers.get(host.providerId!)!.metadata[TAGS.lease]).toBe(lease);
    await impl.release(ready(target!.record, host), on(t!, ready(target!.record, host)));
    await expect(impl.extend!(ready(target!.record, host), lease, on(t!, ready(target!.record, host)))).rejects.toThrow(/is gone/);
  });

  it('sync lists this broker’s servers by metadata, across pages, with what rebuilds the record', async () => {
    cloud.pageSize = 2;
    const ctx = await context();
    const impl = provider();
    const mine = targets(t!, 3, { flavor: 'm1.small' });
    for (const target of mine) await impl.checkout(args({ flavor: 'm1.small', username: 'cloud-user' }), target, on(t!, target));
    const theirs = await openstackContext(fakeInstance(cloud), { brokerId: 'someone-else' });
    await impl.checkout(args(), targets(theirs, 1)[0]!, on(theirs, targets(theirs, 1)[0]!));
    await theirs.cleanup();

    const found = await impl.discover!(ctx);
    expect(found.map((h) => h.id).sort()).toEqual(mine.map((m) => m.record.id).sort());
    const first = found.find((h) => h.id === mine[0]!.record.id)!;
    expect(first).toMatchObject({
      name: mine[0]!.record.name,
      owner: 'tester',
      brokerId: ctx.brokerId,
      leaseExpires: mine[0]!.record.leaseExpires,
      recipe: { provider: 'openstack', instance: 'default', args: { flavor: 'm1.small', username: 'cloud-user' } },
      connection: { kind: 'ssh', username: 'cloud-user' },
    });
    expect(first.hostname).toMatch(/^10\.0\.0\./);
    expect(cloud.count(/^GET .*\/servers\/detail/)).toBeGreaterThan(1);
  });

  it('reports what the reap rule needs: servers whose record is unknown or whose lease passed are picked, and release removes them', async () => {
    const ctx = await context();
    const impl = provider();
    const [kept, orphan, expired] = targets(t!, 3);
    expired!.record.leaseExpires = new Date(clock - 1000).toISOString();
    for (const target of [kept!, orphan!, expired!]) await impl.checkout(args(), target, on(t!, target));
    const doomed = reapable(await impl.discover!(ctx), { brokerId: ctx.brokerId, isKnown: (id) => id !== orphan!.record.id, now: clock, graceMs: 0 });
    expect(doomed.map((d) => d.host.id).sort()).toEqual([orphan!.record.id, expired!.record.id].sort());
    for (const { host } of doomed)
      await impl.release({ ...newRecord(t!, {}, { id: host.id }), providerId: host.providerId }, on(t!, host.id === orphan!.record.id ? orphan! : expired!));
    expect([...cloud.servers.values()].map((s) => s.metadata[TAGS.id])).toEqual([kept!.record.id]);
  });
});

describe('secrets', () => {
  it('never puts the password, app secret, token or admin password in the record, logs or errors', async () => {
    const ctx = await context();
    const impl = provider();
    const [target] = targets(t!, 1);
    const host = await impl.checkout(args(), target!, on(t!, target!));
    const token = cloud.requests.find((r) => r.token)!.token!;
    // A service that echoes a secret in its error message.
    cloud.failNext('GET', /\/servers\/detail$/, 400, { badRequest: { code: 400, message: `bad request for ${token} / ${cloud.users[0]!.password}` } });
    const error = await rejection<ProviderError>(impl.discover!(ctx));

    const secrets = [cloud.users[0]!.password, token, 'AdminPass-Do-Not-Leak-42'];
    const visible = [JSON.stringify(host), JSON.stringify(ready(target!.record, host)), t!.logLines.join('\n'), error.message, JSON.stringify(error.toJSON())];
    for (const text of visible) for (const secret of secrets) expect(text).not.toContain(secret);
    expect(error.message).toContain('[redacted]');
    // Metadata on the server carries no secret either.
    expect(JSON.stringify(cloud.servers.get(host.providerId!)!.metadata)).not.toContain(cloud.users[0]!.password);
  });
});

describe('help and topology', () => {
  it('describe lists images, flavors and networks', async () => {
    const ctx = await context();
    const help = await provider().describe!(ctx);
    expect(help.images).toContain('cirros-0.6.2');
    expect(help.flavors).toContainEqual({ name: 'm1.small', vcpus: 1, ram: 2048 });
    expect(help.networks).toEqual(['private', 'public']);
    expect(await provider().describe!(ctx, 'networks')).toEqual({ networks: ['private', 'public'] });
  });

  it('fromTopology maps os → image, group → flavor, network, keypair and max_retry', () => {
    const mapped = openstack.fromTopology!(
      { name: 'master.test', groups: ['ipaserver'], os: 'fedora-40', network: 'IPv4', args: { floatingIp: true } },
      {
        images: { 'fedora-40': 'Fedora-Cloud-Base-40' },
        flavors: { ipaserver: 'm1.medium', default: 'm1.tiny' },
        networks: { IPv4: 'private' },
        keypair: 'ipa_key',
        max_retry: 4,
      },
    );
    expect(mapped).toEqual({
      name: 'master.test',
      image: 'Fedora-Cloud-Base-40',
      flavor: 'm1.medium',
      network: 'private',
      keyName: 'ipa_key',
      maxRetry: 4,
      floatingIp: true,
    });
    expect(() => openstack.args.parse(mapped)).not.toThrow();
    const plain = openstack.fromTopology!({ name: 'c', groups: ['other'], args: {} }, { flavors: { default: 'm1.tiny' } });
    expect(plain).toEqual({ name: 'c', flavor: 'm1.tiny' });
  });

  it('rejects unknown arguments and settings keys', () => {
    expect(openstack.args.safeParse({ imagee: 'x' }).success).toBe(false);
    expect(openstack.instance!.safeParse({ auth: { auth_url: 'http://x/v3', pasword: 'p' } }).success).toBe(false);
  });
});

it('intentRecord is valid for the inventory', async () => {
  await context();
  const { validateRecord } = await import('../../lib/inventory/index.js');
  expect(() => validateRecord(newRecord(t!))).not.toThrow();
});
