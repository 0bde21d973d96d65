/**
 * A SatelliteQE Broker user's `broker_settings.yaml` (written after Broker's own
 * broker_settings.yaml.example, version 0.7) in the broker directory: hostbroker starts, reads
 * what maps to its own settings, and names what it ignores in one warning.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../lib/index.js';
import { tlsOptionsOf } from '../lib/http-settings.js';
import { builtinProviders } from '../lib/registry.js';
import { loadSettings, resolveInstance, type Settings } from '../lib/settings.js';
import { fromBrokerSettings } from '../lib/settings-broker.js';
import { BeakerInstance } from '../providers/beaker/definition.js';
import { ContainerInstance } from '../providers/container/definition.js';
import { ForemanInstance } from '../providers/foreman/definition.js';
import { TowerInstance } from '../providers/tower/definition.js';

const BROKER_FILE = `# Broker settings
_version: 0.7.0
less_colors: False
logging:
    console_level: warning
    file_level: debug
inventory_fields:
  Host: hostname | name
  Provider: _broker_provider
inventory_list_vars: hostname | name | ip
thread_limit: 8
ssh:
    backend: hussh
    host_username: cloud-user
    host_password: "Br0ker-SSH-Pass"
    host_ssh_port: 2222
    host_ssh_key_filename: "/home/jdoe/.ssh/lab_rsa"
    host_ipv6: False
    host_ipv4_fallback: True
AnsibleTower:
    base_url: "https://tower.lab.example.com/"
    aap_version: "2.5"
    username: "jdoe"
    token: "Tower-T0ken-Value"
    inventory: "jdoe-inventory"
    release_workflow: "remove-vm"
    extend_workflow: "extend-vm"
    new_expire_time: "+172800"
    workflow_timeout: 3600
    workflow_poll_interval: 5
    max_resilient_wait: 7200
    dangling_behavior: store
    results_limit: 50
Container:
    instances:
        docker:
            host_username: "root"
            host_password: "C0ntainer-Pass"
            host_port: null
            runtime: docker
            network: null
            default: True
        remote:
            host: "podman.lab.example.com"
            host_port: 2375
            host_username: "root"
    runtime: podman
    name_prefix: jdoe
    results_limit: 50
    auto_map_ports: False
Foreman:
  instances:
    foreman1:
        foreman_url: https://foreman.lab.example.com
        foreman_username: admin
        foreman_password: "F0reman-Pass"
        organization: ORG
        location: LOC
        verify: ./ca.crt
        default: true
    foreman2:
        foreman_url: https://other.lab.example.com
        foreman_username: admin
        foreman_password: "F0reman-Pass"
        organization: ORG
        location: LOC
        verify: False
  name_prefix: broker
Beaker:
    hub_url: https://beaker.lab.example.com/bkr
    max_job_wait: 24h
TestProvider:
  instances:
    test1:
      foo: "bar"
      default: True
  config_value: "something"
SCENARIO_IMPORT:
    git_hosts:
        - url: "https://github.com"
          token: ""
          type: "github"
nicks:
    rhel9:
        workflow: deploy-rhel
        deploy_rhel_version: 9.4
        notes: "Requested by broker"
    ubi:
        container_host: ubi9:latest
    odd:
        some_arg: 1
`;

const IGNORED = [
  'less_colors',
  'logging.file_level',
  'inventory_fields',
  'inventory_list_vars',
  'ssh.backend',
  'ssh.host_password',
  'ssh.host_ipv6',
  'ssh.host_ipv4_fallback',
  'AnsibleTower.new_expire_time',
  'AnsibleTower.max_resilient_wait',
  'AnsibleTower.results_limit',
  'Container.runtime',
  'Container.results_limit',
  'Container.auto_map_ports',
  'Container.instances.docker.host_username',
  'Container.instances.docker.host_password',
  'Container.instances.docker.runtime',
  'Container.instances.remote.host_username',
  'Foreman.name_prefix',
  'Foreman.instances.foreman1.organization',
  'Foreman.instances.foreman1.location',
  'Foreman.instances.foreman2.organization',
  'Foreman.instances.foreman2.location',
  'TestProvider',
  'SCENARIO_IMPORT',
  'nicks.odd',
];

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});
async function brokerDir(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hb-satqe-'));
  dirs.push(dir);
  await writeFile(join(dir, 'broker_settings.yaml'), text);
  return dir;
}
const names = builtinProviders.map((p) => p.name);
const instance = <T>(settings: Settings, provider: string, schema: { parse(v: unknown): T }, name?: string) =>
  schema.parse(resolveInstance(settings, provider, name).values);

describe('a SatelliteQE Broker settings file', () => {
  it('loads, with the keys that map read into hostbroker settings', async () => {
    const dir = await brokerDir(BROKER_FILE);
    const settings = loadSettings(dir, { providerNames: names, env: {} });
    expect(settings.logLevel).toBe('warn');
    expect(settings.checkout.concurrency).toBe(8);
    expect(settings.ssh).toMatchObject({ username: 'cloud-user', port: 2222, privateKeyPath: '/home/jdoe/.ssh/lab_rsa' });

    expect(instance(settings, 'tower', TowerInstance)).toMatchObject({
      baseUrl: 'https://tower.lab.example.com/',
      apiPath: '/api/controller/v2/',
      username: 'jdoe',
      token: 'Tower-T0ken-Value',
      inventory: 'jdoe-inventory',
      releaseWorkflow: 'remove-vm',
      extendWorkflow: 'extend-vm',
      maxWait: '3600s',
      pollInterval: '5s',
      dangling: 'keep',
    });

    const foreman1 = instance(settings, 'foreman', ForemanInstance);
    expect(foreman1).toMatchObject({ baseUrl: 'https://foreman.lab.example.com', username: 'admin', password: 'F0reman-Pass', ca_file: './ca.crt' });
    // Broker's `verify: ./ca.crt` is relative to the broker directory here, as every path in these settings.
    expect(tlsOptionsOf(foreman1, dir)).toEqual({ caFile: join(dir, 'ca.crt') });
    expect(instance(settings, 'foreman', ForemanInstance, 'foreman2')).toMatchObject({ baseUrl: 'https://other.lab.example.com', insecure: true });

    expect(instance(settings, 'container', ContainerInstance)).toMatchObject({ namePrefix: 'jdoe' });
    expect(instance(settings, 'container', ContainerInstance)).not.toHaveProperty('host');
    expect(instance(settings, 'container', ContainerInstance, 'remote')).toMatchObject({ host: 'podman.lab.example.com', port: 2375, namePrefix: 'jdoe' });

    expect(instance(settings, 'beaker', BeakerInstance)).toMatchObject({ url: 'https://beaker.lab.example.com/bkr', reserveTimeout: '24h' });

    expect(settings.nicks).toEqual({
      rhel9: { provider: 'tower', workflow: 'deploy-rhel', deploy_rhel_version: 9.4, notes: 'Requested by broker' },
      ubi: { provider: 'container', image: 'ubi9:latest' },
    });
  });

  it('starts a Broker that says once, through the user’s logger, which keys it ignored, without their values', async () => {
    const dir = await brokerDir(BROKER_FILE.replace('_version: 0.7.0', '_version: 0.7.1'));
    let out = '';
    const stream = new Writable({
      write(chunk, _e, done) {
        out += chunk.toString();
        done();
      },
    });
    const logger = pino({ base: undefined }, stream);
    const first = new Broker({ directory: dir, logger });
    const second = new Broker({ directory: dir, logger });
    await Promise.all([first.close(), second.close()]);
    const lines = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string; ignored?: string[]; source?: string });
    const warnings = lines.filter((l) => l.level === 40 && l.msg.includes('SatelliteQE Broker'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.source).toBe(join(dir, 'broker_settings.yaml'));
    expect(warnings[0]!.msg).toContain(`${IGNORED.length} SatelliteQE Broker setting(s)`);
    expect([...warnings[0]!.ignored!].sort()).toEqual([...IGNORED].sort());
    expect(out).not.toMatch(/Br0ker-SSH-Pass|C0ntainer-Pass|F0reman-Pass|Tower-T0ken-Value/);
  });

  it("Broker's environment overrides (BROKER_AnsibleTower__base_url, any case) map too", async () => {
    const dir = await brokerDir('_version: 0.7.0\nAnsibleTower:\n  token: t\n');
    const settings = loadSettings(dir, {
      providerNames: names,
      env: { BROKER_AnsibleTower__base_url: 'https://env-tower.example.com/', BROKER_SSH__HOST_USERNAME: 'envuser' },
    });
    expect(instance(settings, 'tower', TowerInstance)).toMatchObject({ baseUrl: 'https://env-tower.example.com/', token: 't' });
    expect(settings.ssh.username).toBe('envuser');
  });

  it('reads the layout before Broker 0.6: SSH keys at the top level, instances as a list', () => {
    const { settings, ignored } = fromBrokerSettings({
      host_username: 'old-user',
      host_password: 'old-pass',
      host_ssh_key_filename: '/k',
      Foreman: {
        instances: [
          { one: { foreman_url: 'https://f1', foreman_username: 'a', default: true } },
          { two: { foreman_url: 'https://f2', foreman_username: 'b' } },
        ],
      },
    });
    expect(settings.ssh).toEqual({ username: 'old-user', privateKeyPath: '/k' });
    expect(settings.foreman).toEqual({
      instances: { one: { baseUrl: 'https://f1', username: 'a', default: true }, two: { baseUrl: 'https://f2', username: 'b' } },
    });
    expect(ignored).toEqual(['host_password']);
  });

  it('leaves hostbroker’s own keys alone, and they win over Broker’s', () => {
    const { settings, ignored } = fromBrokerSettings({
      logLevel: 'debug',
      logging: { console_level: 'info' },
      ssh: { username: 'ours', host_username: 'theirs', channelsPerConnection: 3 },
      tower: { baseUrl: 'https://ours' },
      AnsibleTower: { base_url: 'https://theirs', token: 'x' },
      AnsibleTowerTypo: { a: 1 },
    });
    expect(settings).toEqual({
      logLevel: 'debug',
      ssh: { username: 'ours', channelsPerConnection: 3 },
      tower: { baseUrl: 'https://ours', token: 'x' },
      AnsibleTowerTypo: { a: 1 },
    });
    expect(ignored).toEqual([]);
    // The same, our section written after Broker's: still merged, ours still winning.
    const later = fromBrokerSettings({
      AnsibleTower: { base_url: 'https://theirs', token: 'x', instances: { a: { base_url: 'https://a' } } },
      thread_limit: 4,
      tower: { baseUrl: 'https://ours', instances: { a: { inventory: 'inv' } } },
      checkout: { timeout: '1h' },
    });
    expect(later.settings).toEqual({
      tower: { baseUrl: 'https://ours', token: 'x', instances: { a: { baseUrl: 'https://a', inventory: 'inv' } } },
      checkout: { concurrency: 4, timeout: '1h' },
    });
  });

  it('a file of hostbroker’s own settings gives no warning, and an unknown key is still an error', async () => {
    const own = loadSettings(await brokerDir('logLevel: info\nssh:\n  username: me\n'), { providerNames: names, env: {} });
    expect(own.ssh.username).toBe('me');
    expect(() => loadSettings(dirs[0]!, { providerNames: names, env: {}, overrides: { sshh: {} } })).toThrow(/unknown key `sshh`/);
  });

  it("top-level keys named after Object.prototype's (`__proto__`, `constructor`) are unknown keys, not a crash", async () => {
    for (const text of ['__proto__:\n  "": ""\n', 'constructor:\n  a: 1\n', 'Constructor: {}\n']) {
      const dir = await brokerDir(text);
      let error: unknown;
      try {
        loadSettings(dir, { providerNames: names, env: {} });
      } catch (e) {
        error = e;
      }
      expect(error, text).toMatchObject({ name: 'SettingsError', code: 'SETTINGS' });
      expect((error as Error).message, text).toMatch(/unknown key `(__proto__|constructor|Constructor)`/);
    }
  });
});
