/**
 * The openstack provider's Keystone session against a real Keystone (Debian's python3-keystone:
 * SQLite, fernet tokens, keystone-manage bootstrap) on 127.0.0.1. Nova, Glance and Neutron are
 * FakeOpenStack's, registered in Keystone's catalog; they check every token with Keystone as
 * keystonemiddleware does, so a token the provider reuses, renews or lost to revocation is judged
 * by Keystone itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError } from '../../lib/errors.js';
import type { ResolvedCloud } from '../../providers/openstack/config.js';
import { KeystoneSession } from '../../providers/openstack/keystone.js';
import { openstack } from '../../providers/openstack/definition.js';
import { createOpenStackProvider } from '../../providers/openstack/provider.js';
import { type Keystone, keystoneAvailable, startKeystone } from '../helpers/keystone.js';
import { FakeOpenStack, PROJECT_ID } from '../helpers/openstack-cloud.js';
import { fakeInstance, on, openstackContext, targets } from '../helpers/openstack-context.js';
import { rejection } from '../helpers/rejection.js';

const available = keystoneAvailable();
const PASSWORD = 'demo-Pa55word-keystone';
let keystone: Keystone;
let cloud: FakeOpenStack;
let userId: string;

beforeAll(async () => {
  if (!available) return;
  keystone = await startKeystone();
  cloud = await FakeOpenStack.start({ validateToken: async (token) => (await keystone.validate(token)) === 200 });
  const project = (await keystone.admin('POST', '/projects', { project: { name: 'demo', domain_id: 'default' } })).project as { id: string };
  const user = (await keystone.admin('POST', '/users', { user: { name: 'demo', domain_id: 'default', password: PASSWORD } })).user as { id: string };
  userId = user.id;
  const roles = (await keystone.admin('GET', '/roles?name=member')).roles as Array<{ id: string }>;
  await keystone.admin('PUT', `/projects/${project.id}/users/${user.id}/roles/${roles[0]!.id}`);
  const endpoints: Array<[string, string, string]> = [
    ['compute', 'nova', `${cloud.url}/compute/v2.1/${PROJECT_ID}`],
    ['image', 'glance', `${cloud.url}/image`],
    ['network', 'neutron', `${cloud.url}/network`],
  ];
  for (const [type, name, url] of endpoints) {
    const service = (await keystone.admin('POST', '/services', { service: { type, name } })).service as { id: string };
    await keystone.admin('POST', '/endpoints', { endpoint: { service_id: service.id, interface: 'public', region_id: 'RegionOne', url } });
  }
}, 240_000);

afterAll(async () => {
  await cloud?.close();
  await keystone?.stop();
});

const auth = (extra: Record<string, string> = {}) => ({
  auth_url: keystone.url,
  username: 'demo',
  password: PASSWORD,
  project_name: 'demo',
  user_domain_name: 'Default',
  project_domain_name: 'Default',
  ...extra,
});

/** A session as the provider builds one, counting the token requests it sends. */
function session(options: { auth?: Record<string, string>; now?: () => number; method?: ResolvedCloud['method'] } = {}) {
  const posts = { count: 0 };
  const counting: typeof fetch = (input, init) => {
    if (init?.method === 'POST' && String(input).endsWith('/auth/tokens')) posts.count++;
    return fetch(input, init);
  };
  const s = new KeystoneSession({
    cloud: {
      authUrl: keystone.url,
      method: options.method ?? 'password',
      auth: options.auth ?? auth(),
      regionName: 'RegionOne',
      interface: 'public',
      source: 'the test settings',
      tls: {},
    },
    fetch: counting,
    timeoutMs: 30_000,
    retries: 0,
    retryDelayMs: 10,
    ...(options.now ? { now: options.now } : {}),
  });
  return { s, posts };
}

describe.skipIf(!available)('the openstack provider against a real Keystone', () => {
  it('authenticates with a password, scoped to a project by name, and finds each service in the catalog', async () => {
    const { s } = session();
    expect(await s.endpoint('compute')).toBe(`${cloud.url}/compute/v2.1/${PROJECT_ID}`);
    expect(await s.endpoint('network')).toBe(`${cloud.url}/network`);
    const flavors = await s.service('compute').request('GET', '/flavors/detail');
    expect(flavors.status).toBe(200);
  });

  it('reuses one token for every request, and concurrent callers share one token request', async () => {
    const { s, posts } = session();
    const tokens = await Promise.all([s.token(), s.token(), s.token()]);
    expect(new Set(tokens.map((t) => t.value)).size).toBe(1);
    await s.service('compute').request('GET', '/flavors/detail');
    await s.service('image').request('GET', '/v2/images');
    expect(posts.count).toBe(1);
  });

  it('renews a token close to the expiry Keystone gave it', async () => {
    let clock = Date.now();
    const { s, posts } = session({ now: () => clock });
    const first = await s.token();
    clock = first.expiresAt - 60_000;
    const second = await s.token();
    expect(second.value).not.toBe(first.value);
    expect(posts.count).toBe(2);
    expect(await keystone.validate(second.value)).toBe(200);
  });

  it('gets a new token once when a service refuses a revoked one, and the request goes through', async () => {
    const { s, posts } = session();
    const first = await s.token();
    await keystone.revoke(first.value);
    expect(await keystone.validate(first.value)).toBe(404);
    const res = await s.service('compute').request('GET', '/flavors/detail');
    expect(res.status).toBe(200);
    expect(posts.count).toBe(2);
  });

  it('authenticates with an application credential the user made', async () => {
    const { s: mine } = session();
    const token = (await mine.token()).value;
    const made = await fetch(`${keystone.url}/users/${userId}/application_credentials`, {
      method: 'POST',
      headers: { 'X-Auth-Token': token, 'content-type': 'application/json' },
      body: JSON.stringify({ application_credential: { name: `hb-${Date.now()}` } }),
    });
    expect(made.status).toBe(201);
    const { id, secret } = ((await made.json()) as { application_credential: { id: string; secret: string } }).application_credential;
    const { s } = session({
      method: 'application_credential',
      auth: { auth_url: keystone.url, application_credential_id: id, application_credential_secret: secret },
    });
    expect((await s.service('compute').request('GET', '/flavors/detail')).status).toBe(200);
  });

  it("refuses a wrong password and an unknown project with Keystone's 401, and no secret in the message", async () => {
    for (const wrong of [{ password: 'not-the-password' }, { project_name: 'no-such-project' }] as Array<Record<string, string>>) {
      const { s } = session({ auth: auth(wrong) });
      const error = await rejection<ProviderError>(s.token());
      expect(error).toBeInstanceOf(ProviderError);
      expect(error.status).toBe(401);
      expect(error.message).toContain('requires authentication');
      expect(error.message).not.toContain(PASSWORD);
      expect(error.message).not.toContain('not-the-password');
    }
  });

  it('checks out and releases a server through the provider with a Keystone token', async () => {
    const t = await openstackContext(fakeInstance(cloud, { auth: auth() }));
    try {
      const impl = createOpenStackProvider({ sources: { env: {}, cwd: '/nonexistent', home: '/nonexistent' } });
      const [target] = targets(t, 1);
      const host = await impl.checkout(openstack.args.parse({}), target!, on(t, target!));
      expect(cloud.servers.get(host.providerId!)?.status).toBe('ACTIVE');
      await impl.release({ ...target!.record, providerId: host.providerId!, hostname: host.hostname, data: host.data ?? {} }, on(t, target!));
      expect(cloud.servers.has(host.providerId!)).toBe(false);
    } finally {
      await t.cleanup();
    }
  });
});
