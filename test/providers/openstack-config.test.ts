/**
 * Where the openstack provider finds credentials: clouds.yaml (usual places, OS_CLOUD,
 * OS_CLIENT_CONFIG_FILE, secure.yaml), OS_* variables, and settings instances; and that what it
 * finds authenticates against the fake Keystone (password and application credentials).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { SettingsError } from '../../lib/errors.js';
import { type ConfigSources, cloudsFileCandidates, resolveCloud } from '../../providers/openstack/config.js';
import { OpenStackInstance, openstack } from '../../providers/openstack/definition.js';
import { authBody } from '../../providers/openstack/keystone.js';
import { createOpenStackProvider } from '../../providers/openstack/provider.js';
import { FakeOpenStack } from '../helpers/openstack-cloud.js';
import type { TestContext } from '../../lib/testing/index.js';
import { on, openstackContext, targets } from '../helpers/openstack-context.js';

/** One checkout target and its host context, as the Broker passes them. */
function one(t: TestContext<z.output<typeof OpenStackInstance>>) {
  const [target] = targets(t, 1);
  return [target!, on(t, target!)] as const;
}

let root: string;
let sources: ConfigSources;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'hostbroker-osconfig-'));
  await mkdir(join(root, 'cwd'));
  await mkdir(join(root, 'home'));
  sources = { env: {}, cwd: join(root, 'cwd'), home: join(root, 'home') };
});
afterEach(() => rm(root, { recursive: true, force: true }));

const instance = (values: Record<string, unknown> = {}) => OpenStackInstance.parse(values);

function cloudsYaml(clouds: Record<string, unknown>): string {
  return JSON.stringify({ clouds }); // JSON is YAML
}

const lab = {
  auth: {
    auth_url: 'https://keystone.lab:5000',
    username: 'ci',
    password: 'Lab-Pass-1',
    project_name: 'ci',
    user_domain_name: 'Default',
    project_domain_name: 'Default',
  },
  region_name: 'RegionTwo',
  interface: 'internal',
};

describe('clouds.yaml', () => {
  it('looks in the usual places in order, OS_CLIENT_CONFIG_FILE first', () => {
    sources.env.OS_CLIENT_CONFIG_FILE = '/x/mine.yaml';
    expect(cloudsFileCandidates(sources)).toEqual([
      '/x/mine.yaml',
      join(sources.cwd, 'clouds.yaml'),
      join(sources.home, '.config/openstack/clouds.yaml'),
      '/etc/openstack/clouds.yaml',
    ]);
  });

  it('reads the cloud named by OS_CLOUD from ~/.config/openstack/clouds.yaml', async () => {
    await mkdir(join(sources.home, '.config/openstack'), { recursive: true });
    await writeFile(join(sources.home, '.config/openstack/clouds.yaml'), cloudsYaml({ lab, other: {} }));
    sources.env.OS_CLOUD = 'lab';
    const cloud = resolveCloud(instance(), sources);
    expect(cloud).toMatchObject({ authUrl: 'https://keystone.lab:5000/v3', method: 'password', regionName: 'RegionTwo', interface: 'internal' });
    expect(cloud.auth).toMatchObject({ username: 'ci', password: 'Lab-Pass-1', project_name: 'ci' });
    expect(cloud.source).toContain(`cloud \`lab\` in ${join(sources.home, '.config/openstack/clouds.yaml')}`);
  });

  it('prefers the settings `cloud` over OS_CLOUD, the current directory over home, and merges secure.yaml', async () => {
    const { password: _p, ...noPassword } = lab.auth;
    await writeFile(join(sources.cwd, 'clouds.yaml'), cloudsYaml({ lab: { ...lab, auth: noPassword } }));
    await writeFile(join(sources.cwd, 'secure.yaml'), cloudsYaml({ lab: { auth: { password: 'From-Secure-Yaml' } } }));
    await mkdir(join(sources.home, '.config/openstack'), { recursive: true });
    await writeFile(join(sources.home, '.config/openstack/clouds.yaml'), cloudsYaml({ lab: { auth: { auth_url: 'https://wrong/v3' } } }));
    sources.env.OS_CLOUD = 'nope';
    const cloud = resolveCloud(instance({ cloud: 'lab' }), sources);
    expect(cloud.authUrl).toBe('https://keystone.lab:5000/v3');
    expect(cloud.auth.password).toBe('From-Secure-Yaml');
  });

  it('lets settings override clouds.yaml keys and take the password from a named variable', async () => {
    await writeFile(join(sources.cwd, 'clouds.yaml'), cloudsYaml({ lab }));
    sources.env.LAB_PASSWORD = 'Env-Pass-2';
    const cloud = resolveCloud(instance({ cloud: 'lab', region_name: 'RegionOne', auth: { project_name: 'other' }, passwordEnv: 'LAB_PASSWORD' }), sources);
    expect(cloud).toMatchObject({ regionName: 'RegionOne', auth: { project_name: 'other', password: 'Env-Pass-2', username: 'ci' } });
  });

  it('names the files it looked at, or the clouds it found, when the cloud is missing', async () => {
    sources.env.OS_CLOUD = 'lab';
    const noFile = (() => {
      try {
        resolveCloud(instance(), sources);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(noFile).toBeInstanceOf(SettingsError);
    expect(noFile!.message).toContain(join(sources.cwd, 'clouds.yaml'));
    expect(noFile!.message).toContain('/etc/openstack/clouds.yaml');

    await writeFile(join(sources.cwd, 'clouds.yaml'), cloudsYaml({ prod: lab, dev: lab }));
    expect(() => resolveCloud(instance(), sources)).toThrow(/has no cloud `lab`; it has prod, dev/);
  });
});

describe('OS_* variables and settings', () => {
  it('uses the OS_* variables of an openrc when no cloud is named', () => {
    Object.assign(sources.env, {
      OS_AUTH_URL: 'https://keystone.env/identity/v3/',
      OS_USERNAME: 'envuser',
      OS_PASSWORD: 'Env-Pass-3',
      OS_PROJECT_NAME: 'envproj',
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PROJECT_DOMAIN_ID: 'default',
      OS_REGION_NAME: 'RegionOne',
      OS_INTERFACE: 'public',
    });
    const cloud = resolveCloud(instance(), sources);
    expect(cloud).toMatchObject({
      authUrl: 'https://keystone.env/identity/v3',
      method: 'password',
      regionName: 'RegionOne',
      source: 'the OS_* environment variables',
    });
    expect(authBody(cloud)).toEqual({
      auth: {
        identity: { methods: ['password'], password: { user: { name: 'envuser', domain: { name: 'Default' }, password: 'Env-Pass-3' } } },
        scope: { project: { name: 'envproj', domain: { id: 'default' } } },
      },
    });
  });

  it('picks application credentials from OS_AUTH_TYPE, with no scope in the token request', () => {
    Object.assign(sources.env, {
      OS_AUTH_TYPE: 'v3applicationcredential',
      OS_AUTH_URL: 'https://k/v3',
      OS_APPLICATION_CREDENTIAL_ID: 'ac-1',
      OS_APPLICATION_CREDENTIAL_SECRET: 'App-Secret-4',
    });
    const cloud = resolveCloud(instance(), sources);
    expect(cloud.method).toBe('application_credential');
    expect(authBody(cloud)).toEqual({
      auth: { identity: { methods: ['application_credential'], application_credential: { id: 'ac-1', secret: 'App-Secret-4' } } },
    });
  });

  it('uses settings alone when there is neither a cloud nor OS_* variables', () => {
    const cloud = resolveCloud(instance({ auth: { auth_url: 'https://k:5000/v3', user_id: 'u1', password: 'p-settings', project_id: 'p1' } }), sources);
    expect(authBody(cloud)).toEqual({
      auth: { identity: { methods: ['password'], password: { user: { id: 'u1', password: 'p-settings' } } }, scope: { project: { id: 'p1' } } },
    });
  });

  it('says what is missing, and refuses Keystone v2', () => {
    expect(() => resolveCloud(instance(), sources)).toThrow(/no Keystone URL \(auth_url\).*OS_CLOUD/);
    expect(() => resolveCloud(instance({ auth: { auth_url: 'https://k/v3', username: 'u' }, passwordEnv: 'NOT_SET' }), sources)).toThrow(
      /lacks password \(the variable NOT_SET is not set\)/,
    );
    expect(() => resolveCloud(instance({ auth: { auth_url: 'https://k/v2.0', username: 'u', password: 'x' } }), sources)).toThrow(
      /Keystone v2, which is not supported/,
    );
    expect(() => resolveCloud(instance({ auth_type: 'v3applicationcredential', auth: { auth_url: 'https://k/v3' } }), sources)).toThrow(
      /application_credential_id/,
    );
  });
});

describe('credentials from clouds.yaml reach Keystone', () => {
  let fake: FakeOpenStack;
  beforeEach(async () => {
    fake = await FakeOpenStack.start();
  });
  afterEach(() => fake.close());

  it('checks out with application credentials from clouds.yaml and keeps the secret out of the record and logs', async () => {
    await writeFile(
      join(sources.cwd, 'clouds.yaml'),
      cloudsYaml({
        fake: {
          auth_type: 'v3applicationcredential',
          auth: { auth_url: fake.authUrl, application_credential_id: 'ac-1234', application_credential_secret: 'app-cred-SECRET-value' },
          region_name: 'RegionOne',
        },
      }),
    );
    sources.env.OS_CLOUD = 'fake';
    const t = await openstackContext({ image: 'cirros-0.6.2', flavor: 'm1.tiny', network: 'private', pollInterval: 2 });
    try {
      const impl = createOpenStackProvider({ sources });
      const host = await impl.checkout(openstack.args.parse({}), ...one(t));
      expect(host.hostname).toMatch(/^10\.0\.0\./);
      expect(fake.authCount).toBe(1);
      const tokenRequest = fake.requests.find((r) => r.path.endsWith('/auth/tokens'))!;
      expect(tokenRequest.body).toMatchObject({ auth: { identity: { methods: ['application_credential'] } } });
      expect(JSON.stringify(host)).not.toContain('app-cred-SECRET-value');
      expect(t.logLines.join('\n')).not.toContain('app-cred-SECRET-value');
    } finally {
      await t.cleanup();
    }
  });

  it('a wrong secret fails with Keystone’s message and names where the credentials came from', async () => {
    await writeFile(
      join(sources.cwd, 'clouds.yaml'),
      cloudsYaml({ fake: { auth: { auth_url: fake.authUrl, application_credential_id: 'ac-1234', application_credential_secret: 'Not-The-Secret-9' } } }),
    );
    const t = await openstackContext({ cloud: 'fake', image: 'cirros-0.6.2', flavor: 'm1.tiny' });
    try {
      const error = await createOpenStackProvider({ sources })
        .checkout(openstack.args.parse({}), ...one(t))
        .catch((e: Error) => e);
      expect((error as Error).message).toContain('The request you have made requires authentication');
      expect((error as Error).message).toContain('cloud `fake` in');
      expect((error as Error).message).not.toContain('Not-The-Secret-9');
    } finally {
      await t.cleanup();
    }
  });

  it('a region missing from the catalog says which endpoints exist', async () => {
    const t = await openstackContext({
      auth: { auth_url: fake.authUrl, username: 'demo', password: fake.users[0]!.password, project_name: 'demo' },
      region_name: 'Mars',
      image: 'cirros-0.6.2',
      flavor: 'm1.tiny',
    });
    try {
      const error = await createOpenStackProvider({ sources })
        .checkout(openstack.args.parse({}), ...one(t))
        .catch((e: Error) => e);
      expect((error as Error).message).toMatch(/no `(image|compute)` endpoint for interface public in region Mars; it offers .*compute \(public RegionOne\)/);
    } finally {
      await t.cleanup();
    }
  });
});
