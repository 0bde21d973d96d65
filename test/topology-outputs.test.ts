/**
 * The output renderers on their own: password hosts, hosts without SSH, layouts written with empty
 * (null) groups, interpreters per os, and OpenSSH quoting.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { HostRecord } from '../lib/records.js';
import { parseMetadata, topologyEntries } from '../lib/topology/metadata.js';
import { renderAnsibleInventory, renderSshConfig, type DeploymentMember } from '../lib/topology/outputs.js';

function record(id: string, connection: HostRecord['connection'], provider = 'static'): HostRecord {
  return {
    id,
    name: id,
    hostname: connection?.kind === 'ssh' ? connection.host : `${id}.engine`,
    provider,
    instance: 'default',
    state: 'ready',
    recipe: { provider, args: {} },
    owner: 'me',
    brokerId: 'b',
    createdAt: '2026-01-01T00:00:00Z',
    data: {},
    ...(connection ? { connection } : {}),
  };
}

const entries = topologyEntries(
  parseMetadata(`
domains:
  - name: lab.test
    hosts:
      - { name: db, role: db, groups: [db, backend], os: centos-7 }
      - { name: web, role: web, group: frontend, os: debian-12 }
      - { name: box.other.test, role: util }
`),
);

const members: DeploymentMember[] = [
  { entry: entries[0]!, record: record('hb-1', { kind: 'ssh', host: '10.0.0.1', port: 2222, username: 'ci', passwordEnv: 'LAB_PASSWORD' }) },
  { entry: entries[1]!, record: record('hb-2', { kind: 'ssh', host: '10.0.0.2', port: 22, username: 'ci', privateKeyPath: '/keys/my key' }) },
  { entry: entries[2]!, record: record('hb-3', { kind: 'provider' }, 'container') },
];

describe('topology outputs', () => {
  it('places hosts in layout groups (null leaves too), creates missing ones, and maps interpreters by os', () => {
    const layout = parseYaml('all:\n  children:\n    backend:\n      children:\n        db:\n') as Record<string, unknown>;
    const inv = parseYaml(
      renderAnsibleInventory(members, { layout, python: { 'centos-7': '/usr/bin/python2', default: '/usr/libexec/platform-python' } }),
    ) as any;
    expect(inv.all.children.backend.children.db.hosts).toEqual({ 'db.lab.test': {} });
    expect(inv.all.children.backend.hosts).toEqual({ 'db.lab.test': {} });
    expect(inv.all.children.frontend.hosts).toEqual({ 'web.lab.test': {} });
    expect(inv.all.hosts['db.lab.test'].ansible_python_interpreter).toBe('/usr/bin/python2');
    expect(inv.all.hosts['web.lab.test'].ansible_python_interpreter).toBe('/usr/libexec/platform-python');
    expect(inv.all.hosts['box.other.test']).toMatchObject({
      meta_domain: 'lab.test',
      meta_fqdn: 'box.other.test',
      meta_provider: 'container',
      ansible_host: 'hb-3.engine',
    });
  });

  it('gives password hosts an env lookup, never a password, and no key', () => {
    const inv = parseYaml(renderAnsibleInventory(members)) as any;
    const db = inv.all.hosts['db.lab.test'];
    expect(db.ansible_password).toBe("{{ lookup('env', 'LAB_PASSWORD') }}");
    expect(db).not.toHaveProperty('ansible_ssh_private_key_file');
    expect(db).toMatchObject({ ansible_host: '10.0.0.1', ansible_port: 2222, ansible_user: 'ci' });
    expect(inv.all.hosts['web.lab.test'].ansible_ssh_private_key_file).toBe('/keys/my key');
  });

  it('points SSH hosts at the known_hosts file with strict checking, quoted for shlex and for ssh', () => {
    const inv = parseYaml(renderAnsibleInventory(members, { knownHostsFile: "/b/it's here/known_hosts" })) as any;
    const args = inv.all.hosts['web.lab.test'].ansible_ssh_common_args as string;
    // What Python's shlex.split (Ansible) makes of it, done by a real shell here.
    const words = execFileSync('sh', ['-c', `for w in ${args}; do printf '%s\\n' "$w"; done`], { encoding: 'utf8' })
      .trim()
      .split('\n');
    expect(words).toEqual(['-o', `UserKnownHostsFile="/b/it's here/known_hosts"`, '-o', 'StrictHostKeyChecking=yes']);
    expect(inv.all.hosts['db.lab.test'].ansible_ssh_common_args).toBe(args);
    expect(inv.all.hosts['box.other.test']).not.toHaveProperty('ansible_ssh_common_args');
    expect(parseYaml(renderAnsibleInventory(members)).all.hosts['web.lab.test']).not.toHaveProperty('ansible_ssh_common_args');
  });

  it('writes one Host block per SSH host, quoting paths with spaces, and a note for hosts without SSH', () => {
    const text = renderSshConfig(members, { knownHostsFile: '/tmp/known hosts', title: 't' });
    expect(text).toContain('Host db.lab.test db\n  HostName 10.0.0.1\n  Port 2222\n  User ci\n  # password login: the password is in $LAB_PASSWORD\n');
    expect(text).toContain(
      'Host web.lab.test web\n  HostName 10.0.0.2\n  Port 22\n  User ci\n  IdentityFile "/keys/my key"\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  UserKnownHostsFile "/tmp/known hosts"\n',
    );
    expect(text).toContain('# box.other.test: reached through the container provider, not SSH (use `hostbroker ssh hb-3`)');
    expect(text).not.toMatch(/^Host box/m);
  });
});
