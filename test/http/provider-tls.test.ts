/**
 * The providers' TLS settings reach the wire: `ca_file` (relative to the broker directory) and
 * `insecure` in an instance, and OpenStack's `cacert` / `verify` in clouds.yaml (or OS_CACERT).
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { TlsError } from '../../lib/errors.js';
import { tlsOptionsOf } from '../../lib/http-settings.js';
import { createLogger } from '../../lib/logger.js';
import { resolveCloud, type ConfigSources } from '../../providers/openstack/config.js';
import { OpenStackInstance } from '../../providers/openstack/definition.js';
import { KeystoneSession } from '../../providers/openstack/keystone.js';
import { TowerApi } from '../../providers/tower/api.js';
import { TowerInstance } from '../../providers/tower/definition.js';
import { BeakerInstance } from '../../providers/beaker/definition.js';
import { ForemanInstance } from '../../providers/foreman/definition.js';
import { MrProvisionerInstance } from '../../providers/mrprovisioner/definition.js';
import { rejection } from '../helpers/rejection.js';
import { makePki, startHttpsServer, type TestPki, type TestServer } from '../helpers/tls.js';

let pki: TestPki;
let trusted: TestServer;
let selfSigned: TestServer;

/** Answers Tower's `me/` and Keystone's token request, enough to prove the connection works. */
function handler(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
  res.setHeader('content-type', 'application/json');
  if (req.url?.endsWith('/auth/tokens')) {
    res.setHeader('x-subject-token', 'tok-123');
    return void res.end(JSON.stringify({ token: { expires_at: new Date(Date.now() + 3600_000).toISOString(), catalog: [] } }));
  }
  res.end(JSON.stringify({ count: 1, results: [{ username: 'jdoe' }] }));
}

beforeAll(async () => {
  pki = makePki();
  [trusted, selfSigned] = await Promise.all([startHttpsServer(pki.good, handler), startHttpsServer(pki.selfSigned, handler)]);
});
afterAll(async () => {
  await Promise.all([trusted?.close(), selfSigned?.close()]);
  pki?.remove();
});

describe('instance settings', () => {
  it('every lab-service provider accepts ca_file and insecure (and rejects a misspelt key)', () => {
    for (const [schema, base] of [
      [TowerInstance, { baseUrl: 'https://tower.example' }],
      [ForemanInstance, { baseUrl: 'https://foreman.example', username: 'u' }],
      [BeakerInstance, { url: 'https://beaker.example/bkr' }],
      [MrProvisionerInstance, { url: 'https://mrp.example/api/v1' }],
      [OpenStackInstance, {}],
    ] as const) {
      const parsed = (schema as z.ZodType).parse({ ...base, ca_file: 'ca.pem', insecure: true }) as { ca_file?: string; insecure?: boolean };
      expect(parsed).toMatchObject({ ca_file: 'ca.pem', insecure: true });
      expect((schema as z.ZodType).safeParse({ ...base, cafile: 'ca.pem' }).success).toBe(false);
    }
  });

  it('ca_file is resolved against the broker directory, ~/ against home, absolute as is', () => {
    expect(tlsOptionsOf({ ca_file: 'certs/ca.pem' }, '/srv/broker')).toEqual({ caFile: '/srv/broker/certs/ca.pem' });
    expect(tlsOptionsOf({ ca_file: '/etc/pki/ca.pem', insecure: false }, '/srv/broker')).toEqual({ caFile: '/etc/pki/ca.pem' });
    expect(tlsOptionsOf({ ca_file: '~/ca.pem' }, '/srv/broker').caFile).toMatch(/\/ca\.pem$/);
    expect(tlsOptionsOf({ insecure: true }, '/srv/broker')).toEqual({ insecure: true });
  });

  it('tower trusts the CA named by a relative ca_file in the broker directory', async () => {
    const directory = join(pki.dir, 'broker');
    mkdirSync(directory, { recursive: true });
    copyFileSync(pki.caFile, join(directory, 'lab-ca.pem'));
    const me = z.object({ results: z.array(z.object({ username: z.string() })) });
    const settings = TowerInstance.parse({ baseUrl: trusted.url, token: 't0k3n-value', ca_file: 'lab-ca.pem', retries: 0 });
    const api = new TowerApi(settings, createLogger('silent'), new AbortController().signal, directory);
    expect(await api.get('me/', me)).toEqual({ results: [{ username: 'jdoe' }] });

    const untrusting = new TowerApi(
      TowerInstance.parse({ baseUrl: trusted.url, token: 't0k3n-value' }),
      createLogger('silent'),
      new AbortController().signal,
      directory,
    );
    const error = await rejection<TlsError>(untrusting.get('me/', me));
    expect(error).toBeInstanceOf(TlsError);
    expect(error.provider).toBe('tower');
    expect(error.message).toContain('tower instance settings');
  });
});

describe('openstack clouds.yaml', () => {
  let sources: ConfigSources;
  beforeAll(() => {
    const cwd = join(pki.dir, 'os-cwd');
    mkdirSync(cwd, { recursive: true });
    sources = { env: { OS_CLOUD: 'lab' }, cwd, home: join(pki.dir, 'os-home') };
  });
  const auth = (url: string) => ({ auth_url: `${url}/v3`, username: 'ci', password: 'Lab-Pass-1', project_name: 'ci' });
  const write = (entry: Record<string, unknown>) => writeFileSync(join(sources.cwd, 'clouds.yaml'), JSON.stringify({ clouds: { lab: entry } }));
  const session = (cloud: ReturnType<typeof resolveCloud>) => new KeystoneSession({ cloud, timeoutMs: 10_000, retries: 2, retryDelayMs: 1 });

  it('cacert (relative to the working directory, as the OpenStack tools take it) is trusted', async () => {
    copyFileSync(pki.caFile, join(sources.cwd, 'os-ca.pem'));
    write({ auth: auth(trusted.url), cacert: 'os-ca.pem' });
    const cloud = resolveCloud(OpenStackInstance.parse({}), sources);
    expect(cloud.tls).toEqual({ caFile: join(sources.cwd, 'os-ca.pem') });
    expect((await session(cloud).token()).value).toBe('tok-123');
  });

  it('verify: false skips verification; without it a self-signed Keystone is a TlsError, tried once', async () => {
    write({ auth: auth(selfSigned.url), verify: false });
    expect((await session(resolveCloud(OpenStackInstance.parse({}), sources)).token()).value).toBe('tok-123');

    write({ auth: auth(selfSigned.url) });
    const before = selfSigned.connections;
    const error = await rejection<TlsError>(session(resolveCloud(OpenStackInstance.parse({}), sources)).token());
    expect(error).toBeInstanceOf(TlsError);
    expect(error.tlsCode).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(selfSigned.connections).toBe(before + 1);
  });

  it('the instance ca_file / insecure win over clouds.yaml; OS_CACERT and OS_INSECURE apply when the cloud says nothing', () => {
    write({ auth: auth(trusted.url), cacert: 'os-ca.pem', verify: false });
    const own = resolveCloud(OpenStackInstance.parse({ ca_file: 'mine.pem', insecure: false }), sources, '/srv/broker');
    expect(own.tls).toEqual({ caFile: '/srv/broker/mine.pem' });

    write({ auth: auth(trusted.url) });
    const fromEnv = resolveCloud(OpenStackInstance.parse({}), { ...sources, env: { ...sources.env, OS_CACERT: '/etc/pki/os.pem', OS_INSECURE: 'true' } });
    expect(fromEnv.tls).toEqual({ caFile: '/etc/pki/os.pem', insecure: true });
    expect(resolveCloud(OpenStackInstance.parse({}), sources).tls).toEqual({});
  });
});
