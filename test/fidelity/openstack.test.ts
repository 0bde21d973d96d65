/**
 * Nova's doc/api_samples and Glance's and Neutron's api-ref samples (test/fidelity/samples/openstack/)
 * through the openstack provider's schemas, and FakeOpenStack checked against the same shapes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreatedServer,
  FlavorList,
  FloatingIpList,
  ImageList,
  KeypairEnvelope,
  Limits,
  NetworkList,
  PortList,
  ServerEnvelope,
  ServerList,
} from '../../providers/openstack/schemas.js';
import { FakeOpenStack, FLAVORS, IMAGES, NETWORKS } from '../helpers/openstack-cloud.js';
import { expectSameShape, sample } from './samples.js';

const SCHEMAS = {
  'nova-server-get.json': ServerEnvelope,
  'nova-servers-details.json': ServerList,
  'nova-server-create.json': CreatedServer,
  'nova-flavors-detail.json': FlavorList,
  'nova-limits.json': Limits,
  'nova-keypair-get.json': KeypairEnvelope,
  'glance-images-list.json': ImageList,
  'neutron-networks-list.json': NetworkList,
  'neutron-ports-list.json': PortList,
  'neutron-floatingips-list.json': FloatingIpList,
} as const;

let cloud: FakeOpenStack;
let token: string;
let serverId: string;

async function call(method: string, url: string, body?: unknown): Promise<unknown> {
  const res = await fetch(url, {
    method,
    headers: { 'X-Auth-Token': token, 'content-type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  expect(res.status).toBeLessThan(300);
  return res.json();
}

beforeAll(async () => {
  cloud = await FakeOpenStack.start({ buildPolls: 0 });
  const auth = await fetch(`${cloud.authUrl}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      auth: { identity: { methods: ['password'], password: { user: { name: 'demo', password: cloud.users[0]!.password, domain: { id: 'default' } } } } },
    }),
  });
  token = auth.headers.get('x-subject-token')!;
  cloud.keypairs.set('ci-key', 'ssh-ed25519 AAAA test');
  const created = (await call('POST', `${cloud.computeUrl}/servers`, {
    server: { name: 's1', imageRef: IMAGES[0]!.id, flavorRef: FLAVORS[0]!.id, networks: [{ uuid: NETWORKS[0]!.id }], key_name: 'ci-key' },
  })) as { server: { id: string } };
  serverId = created.server.id;
});

afterAll(() => cloud.close());

describe("OpenStack's published samples through the openstack provider's schemas", () => {
  it.each(Object.keys(SCHEMAS))('%s', (name) => {
    expect(SCHEMAS[name as keyof typeof SCHEMAS].safeParse(sample(`openstack/${name}`)).error).toBeUndefined();
  });

  it("reads a server's addresses, metadata and the next-page link as Nova sends them", () => {
    const list = ServerList.parse(sample('openstack/nova-servers-details.json'));
    expect(list.servers[0]!.addresses.private![0]).toMatchObject({ addr: '192.168.1.30', 'OS-EXT-IPS:type': 'fixed', version: 4 });
    expect(list.servers_links?.[0]?.rel).toBe('next');
  });
});

describe('FakeOpenStack answers in the shapes the services do', () => {
  it('Nova: a server, the server list, create, flavors, limits, keypairs', async () => {
    expectSameShape(await call('GET', `${cloud.computeUrl}/servers/${serverId}`), sample('openstack/nova-server-get.json'));
    const { servers_links: _links, ...details } = sample<Record<string, unknown>>('openstack/nova-servers-details.json');
    expectSameShape(await call('GET', `${cloud.computeUrl}/servers/detail`), details);
    expectSameShape(await call('GET', `${cloud.computeUrl}/flavors/detail`), sample('openstack/nova-flavors-detail.json'));
    expectSameShape(await call('GET', `${cloud.computeUrl}/limits`), sample('openstack/nova-limits.json'));
    expectSameShape(await call('GET', `${cloud.computeUrl}/os-keypairs/ci-key`), sample('openstack/nova-keypair-get.json'));
  });

  it('Glance images, Neutron networks, ports and floating IPs', async () => {
    const { next: _next, first: _first, ...images } = sample<Record<string, unknown>>('openstack/glance-images-list.json');
    expectSameShape(await call('GET', `${cloud.url}/image/v2/images`), images);
    expectSameShape(await call('GET', `${cloud.url}/network/v2.0/networks`), sample('openstack/neutron-networks-list.json'));
    expectSameShape(await call('GET', `${cloud.url}/network/v2.0/ports?device_id=${serverId}`), sample('openstack/neutron-ports-list.json'));
    await call('POST', `${cloud.url}/network/v2.0/floatingips`, { floatingip: { floating_network_id: NETWORKS[1]!.id } });
    expectSameShape(await call('GET', `${cloud.url}/network/v2.0/floatingips`), sample('openstack/neutron-floatingips-list.json'));
  });
});
