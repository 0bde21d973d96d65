/**
 * The container provider's pure parts: argument parsing into the engine's create request, and
 * labels back into records. No engine needed.
 */
import { describe, expect, it } from 'vitest';
import { ContainerArgs } from '../../providers/container/definition.js';
import { LABELS, createOptions, hostLabels, leasePassed, parsePort, parseVolumes, readLabels } from '../../providers/container/create-request.js';
import type { HostRecord } from '../../lib/records.js';

const record: HostRecord = {
  id: 'hb-0123456789ab',
  name: 'web-1',
  hostname: '',
  provider: 'container',
  instance: 'default',
  state: 'provisioning',
  recipe: { provider: 'container', args: { image: 'img', env: { DB_PASSWORD: 'hunter22', MODE: 'test' } } },
  owner: 'alice',
  brokerId: 'b-1',
  createdAt: '2030-01-01T00:00:00.000Z',
  leaseExpires: '2030-01-01T04:00:00.000Z',
  data: {},
};

describe('container arguments', () => {
  it('parses every port form, binding to loopback unless told otherwise', () => {
    expect(parsePort(8080, '127.0.0.1')).toEqual({ key: '8080/tcp', hostIp: '127.0.0.1', hostPort: '' });
    expect(parsePort('53/udp', '127.0.0.1')).toEqual({ key: '53/udp', hostIp: '127.0.0.1', hostPort: '' });
    expect(parsePort('9000:80', '127.0.0.1')).toEqual({ key: '80/tcp', hostIp: '127.0.0.1', hostPort: '9000' });
    expect(parsePort('0.0.0.0:9000:80', '127.0.0.1')).toEqual({ key: '80/tcp', hostIp: '0.0.0.0', hostPort: '9000' });
    expect(parsePort('[::1]:9000:80', '127.0.0.1')).toEqual({ key: '80/tcp', hostIp: '::1', hostPort: '9000' });
    expect(parsePort({ container: 22, host: 2222, hostIp: '127.0.0.1', protocol: 'tcp' }, '127.0.0.1')).toEqual({
      key: '22/tcp',
      hostIp: '127.0.0.1',
      hostPort: '2222',
    });
    expect(ContainerArgs.safeParse({ image: 'x', ports: ['80:'] }).success).toBe(false);
  });

  it('tells binds, named and anonymous volumes apart', () => {
    expect(
      parseVolumes(['/srv:/data:ro', 'cache:/cache', '/scratch', { target: '/anon', readOnly: false }, { source: '/h', target: '/c', readOnly: true }]),
    ).toEqual({
      binds: ['/srv:/data:ro', 'cache:/cache', '/h:/c:ro'],
      anonymous: ['/scratch', '/anon'],
    });
    expect(() => parseVolumes(['relative'])).toThrow(/absolute path/);
  });

  it('builds the create request: command through sh, SSH port published on loopback, hostname = name', () => {
    const args = ContainerArgs.parse({
      image: 'img',
      command: 'sleep 1000',
      env: { A: '1' },
      ports: [8080],
      ssh: true,
      user: 'app',
      privileged: true,
      network: 'lab',
    });
    const o = createOptions({
      args,
      name: 'web-1',
      record,
      instance: 'default',
      publishAddress: '127.0.0.1',
      ssh: { user: 'root', port: 22 },
      publicKey: 'ssh-ed25519 AAAA test',
    });
    expect(o).toMatchObject({
      name: 'web-1',
      Hostname: 'web-1',
      Image: 'img',
      Cmd: ['/bin/sh', '-c', 'sleep 1000'],
      User: 'app',
      Env: ['A=1', 'HOSTBROKER_AUTHORIZED_KEY=ssh-ed25519 AAAA test'],
      ExposedPorts: { '8080/tcp': {}, '22/tcp': {} },
      HostConfig: { Privileged: true, NetworkMode: 'lab', PortBindings: { '22/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
    });
  });

  it('labels carry the record and read back; secrets never reach the recipe label', () => {
    const args = ContainerArgs.parse({ image: 'img', labels: { team: 'qa' } });
    const labels = hostLabels({ args, name: 'web-1', record, instance: 'default', ssh: { user: 'root', port: 22 } });
    expect(labels).toMatchObject({ team: 'qa', [LABELS.id]: record.id, [LABELS.owner]: 'alice', [LABELS.broker]: 'b-1', [LABELS.lease]: record.leaseExpires });
    expect(JSON.stringify(labels)).not.toContain('hunter22');
    expect(readLabels(labels)).toMatchObject({
      id: record.id,
      owner: 'alice',
      brokerId: 'b-1',
      name: 'web-1',
      leaseExpires: record.leaseExpires,
      ssh: { user: 'root', port: 22 },
      recipe: { provider: 'container', args: { image: 'img', env: { MODE: 'test' } } },
    });
    expect(readLabels({ [LABELS.recipe]: '{not json', [LABELS.id]: 'x' })).toEqual({ id: 'x' });
  });

  it('knows when a lease has passed', () => {
    expect(leasePassed(undefined)).toBe(false);
    expect(leasePassed('2000-01-01T00:00:00Z')).toBe(true);
    expect(leasePassed('2999-01-01T00:00:00Z')).toBe(false);
  });
});
