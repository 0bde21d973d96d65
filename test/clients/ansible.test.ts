/**
 * Ansible as on a user's machine (ansible-core from Debian, its defaults, no host key override)
 * against the hosts of one `broker.up` deployment: a `container` host over SSH logged in as a
 * non-root user, a `static` machine (a real sshd) and a `local` host. A playbook gathers facts
 * and runs `command`, `file`, `copy`, `template` and `become`; plays target the topology's groups;
 * templates read the meta variables as hostvars. The results are checked through hostbroker's
 * own sessions. Then the static host's key changes and Ansible, `ssh -F` and hostbroker refuse it.
 * Every client runs with a time limit, so a hang fails the test instead of stalling the suite.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker, HostConnectionError, type Deployment } from '../../lib/index.js';
import { type Sshd, sshdAvailable, startSshd } from '../helpers/sshd.js';
import { SSHD_IMAGE, probeEngine, removeBrokerContainers, skipReason } from '../helpers/engine.js';
import { changeHostKey, freshConnectError } from '../helpers/host-keys.js';

interface Ran {
  status: number | null;
  output: string;
  timedOut: boolean;
}

/** Runs a client in its own process group; past `timeoutMs` the whole group is killed. */
function runClient(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (output += String(d)));
    child.stderr.on('data', (d: Buffer) => (output += String(d)));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, options.timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output, timedOut });
    });
  });
}

/** Whether ansible-playbook is on PATH; in CI a missing one is a failure, not a skip. */
function ansibleAvailable(): boolean {
  const found = (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'ansible-playbook')));
  if (!found && process.env.CI === 'true') throw new Error('ansible-playbook is missing in CI: scripts/setup-test-env.sh installs ansible-core.');
  return found;
}

const probe = await probeEngine([SSHD_IMAGE]);
const engineSkip = skipReason(probe);
const skip = !sshdAvailable() || !ansibleAvailable();

const PLAYBOOK = `
- name: every host
  hosts: all
  gather_facts: true
  tasks:
    - name: a command
      command: echo "ran on {{ inventory_hostname }}"
      register: echoed
      changed_when: false
    - name: a directory
      file: { path: "{{ work }}", state: directory, mode: "0750" }
    - name: a file copied
      copy: { content: "{{ echoed.stdout }}\\n", dest: "{{ work }}/copied.txt", mode: "0640" }
    - name: a template of facts and hostvars
      template: { src: facts.j2, dest: "{{ work }}/facts.txt", mode: "0644" }

- name: only the web group
  hosts: web
  gather_facts: false
  tasks:
    - copy: { content: "web\\n", dest: "{{ work }}/web-marker" }

- name: root through sudo where the login is not root
  hosts: all
  gather_facts: false
  tasks:
    - command: id -un
      become: true
      register: became
      changed_when: false
      when: ansible_user != 'root'
    - copy: { content: "{{ became.stdout }}\\n", dest: "{{ work }}/became.txt" }
      when: ansible_user != 'root'
    - copy: { content: "root-owned\\n", dest: "/root/hb-become-{{ meta_hostbroker_id }}", mode: "0600" }
      become: true
      when: ansible_user != 'root'
`;

const TEMPLATE = `host={{ inventory_hostname }}
role={{ meta_role }}
provider={{ meta_provider }}
fqdn={{ meta_fqdn }}
id={{ meta_hostbroker_id }}
rack={{ meta_rack }}
site={{ site }}
kernel={{ ansible_facts.system }}
login={{ ansible_facts.user_id }}
in_web={{ 'web' in group_names }}
db_role={{ hostvars['db1.ans.test'].meta_role }}
`;

describe.skipIf(skip || Boolean(engineSkip))(
  `Ansible against local, container and static hosts${engineSkip ? ` (skipped: ${engineSkip})` : ''}`,
  { timeout: 600_000 },
  () => {
    let dir: string;
    let sshd: Sshd;
    let broker: Broker;
    let deployment: Deployment;
    let work: string;
    let env: NodeJS.ProcessEnv;
    let controlDir: string;

    const ansible = (program: string, args: string[], timeoutMs = 240_000): Promise<Ran> =>
      runClient(program, ['-i', join(work, 'inventory.yaml'), ...args], { cwd: work, env, timeoutMs });
    const playbook = (limit: string): Promise<Ran> => ansible('ansible-playbook', ['--limit', limit, 'site.yml'], 150_000);

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'hb-ansible-'));
      work = join(dir, 'work');
      controlDir = join(dir, 'cp');
      await mkdir(work);
      await mkdir(controlDir);
      sshd = await startSshd();
      broker = new Broker({
        directory: join(dir, 'broker'),
        settings: {
          logLevel: 'silent',
          static: { hosts: [{ name: 'lab1', hostname: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath }] },
        },
      });
      const metadata = `
name: ansible-clients
ansible_inventory:
  site: hb-lab
domains:
- name: ans.test
  hosts:
  - name: db1
    role: database
    groups: [db]
    provider: container
    meta_rack: r1
    args: { image: '${SSHD_IMAGE}', ssh: { user: tester } }
    ansible_inventory: { work: /home/tester/ansible }
  - name: lab1
    role: webserver
    groups: [web, lab]
    provider: static
    meta_rack: r2
    args: { name: lab1 }
    ansible_inventory: { work: '${join(dir, 'static-work')}' }
  - name: web1
    role: webserver
    groups: [web]
    provider: local
    meta_rack: r3
    ansible_inventory: { work: '${join(dir, 'local-work')}' }
`;
      deployment = await broker.up(metadata);
      await writeFile(join(work, 'inventory.yaml'), deployment.ansibleInventory());
      await writeFile(join(work, 'ssh_config'), deployment.sshConfig());
      await writeFile(join(work, 'site.yml'), PLAYBOOK);
      await writeFile(join(work, 'facts.j2'), TEMPLATE);
      // The user's environment without any Ansible setting (none may switch host key checking off);
      // only where Ansible keeps its connection sockets and temp files is this test's own.
      env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ANSIBLE_')));
      Object.assign(env, {
        ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir,
        ANSIBLE_LOCAL_TEMP: join(dir, 'ansible-tmp'),
        ANSIBLE_NOCOLOR: '1',
        ANSIBLE_FORCE_COLOR: '0',
      });
    }, 300_000);

    afterAll(async () => {
      // Ansible leaves ControlPersist masters behind (60 s): ask each to exit, as `ssh -O exit` does.
      for (const socket of await readdir(controlDir).catch(() => [] as string[])) {
        await runClient('ssh', ['-o', `ControlPath=${join(controlDir, socket)}`, '-O', 'exit', 'ignored'], { cwd: dir, env: process.env, timeoutMs: 10_000 });
      }
      await deployment?.destroy().catch(() => undefined);
      await broker?.close();
      if (probe.engine && broker) await removeBrokerContainers(probe.engine, broker.brokerId);
      await sshd?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    const facts = async (name: string): Promise<Record<string, string>> => {
      const host = deployment.byName(name);
      const text = String(await host.session.read(`${workOf(name)}/facts.txt`));
      return Object.fromEntries(
        text
          .trim()
          .split('\n')
          .map((l) => l.split('=', 2) as [string, string]),
      );
    };
    const workOf = (name: string): string => ({ db1: '/home/tester/ansible', lab1: join(dir, 'static-work'), web1: join(dir, 'local-work') })[name]!;

    /** What every host must show after the playbook, read back through hostbroker's session. */
    async function expectPlaybookResults(
      name: string,
      expected: { role: string; provider: string; rack: string; inWeb: boolean; login: string },
    ): Promise<void> {
      const host = deployment.byName(name);
      const w = workOf(name);
      expect(await facts(name)).toEqual({
        host: `${name}.ans.test`,
        role: expected.role,
        provider: expected.provider,
        fqdn: `${name}.ans.test`,
        id: host.id,
        rack: expected.rack,
        site: 'hb-lab',
        kernel: 'Linux',
        login: expected.login,
        in_web: expected.inWeb ? 'True' : 'False',
        db_role: 'database',
      });
      expect(String(await host.session.read(`${w}/copied.txt`))).toBe(`ran on ${name}.ans.test\n`);
      const modes = await host.execute(`stat -c '%a %U' ${w} ${w}/copied.txt`);
      expect(modes.stdout).toBe(`750 ${expected.login}\n640 ${expected.login}\n`);
      const marker = await host.execute(`test -e ${w}/web-marker && echo yes || echo no`);
      expect(marker.stdout.trim()).toBe(expected.inWeb ? 'yes' : 'no');
    }

    it('the rendered inventory needs no host key override: it points at the broker’s known_hosts, strictly', () => {
      const text = deployment.ansibleInventory();
      expect(text).toContain(`UserKnownHostsFile=${join(dir, 'broker', 'known_hosts')}`);
      expect(text).toContain('StrictHostKeyChecking=yes');
      expect(Object.keys(env).filter((k) => /HOST_KEY/.test(k))).toEqual([]);
    });

    it('`ssh -F` with the rendered config logs in to every host with StrictHostKeyChecking yes and no prompt', async () => {
      for (const alias of ['db1', 'lab1.ans.test', 'web1']) {
        const r = await runClient('ssh', ['-F', join(work, 'ssh_config'), '-o', 'BatchMode=yes', alias, 'echo via-openssh'], {
          cwd: work,
          env,
          timeoutMs: 30_000,
        });
        expect(r, alias).toMatchObject({ status: 0, timedOut: false });
        expect(r.output).toBe('via-openssh\n');
      }
    });

    it('groups and meta variables are what Ansible sees', async () => {
      const r = await ansible('ansible-inventory', ['--list'], 60_000);
      expect(r).toMatchObject({ status: 0, timedOut: false });
      const inv = JSON.parse(r.output) as {
        web: { hosts: string[] };
        db: { hosts: string[] };
        lab: { hosts: string[] };
        _meta: { hostvars: Record<string, Record<string, unknown>> };
      };
      expect(inv.web.hosts.sort()).toEqual(['lab1.ans.test', 'web1.ans.test']);
      expect(inv.db.hosts).toEqual(['db1.ans.test']);
      expect(inv.lab.hosts).toEqual(['lab1.ans.test']);
      expect(inv._meta.hostvars['db1.ans.test']).toMatchObject({ meta_role: 'database', meta_provider: 'container', meta_rack: 'r1', ansible_user: 'tester' });
    });

    it('runs the playbook on a container host over SSH as a non-root user, with become', async () => {
      const r = await playbook('db');
      expect(r.timedOut, r.output).toBe(false);
      expect(r.status, r.output).toBe(0);
      expect(r.output).toMatch(/db1\.ans\.test\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0/);
      await expectPlaybookResults('db1', { role: 'database', provider: 'container', rack: 'r1', inWeb: false, login: 'tester' });
      const db = deployment.byName('db1');
      expect(String(await db.session.read(`${workOf('db1')}/became.txt`))).toBe('root\n');
      expect((await db.execute(`sudo -n stat -c '%U %a' /root/hb-become-${db.id}`)).stdout).toBe('root 600\n');
    });

    it('runs the playbook on a static machine (a real sshd)', async () => {
      const r = await playbook('lab');
      expect(r.timedOut, r.output).toBe(false);
      expect(r.status, r.output).toBe(0);
      await expectPlaybookResults('lab1', { role: 'webserver', provider: 'static', rack: 'r2', inWeb: true, login: sshd.username });
    });

    // TODO: needs the sftp branch (the local provider's SFTP server: channel close after EOF,
    // OPEN with WRITE|CREAT without TRUNC). Until then Ansible hangs on its first file transfer to
    // a `local` host and this test fails at its time limit.
    it('runs the playbook on a local host', async () => {
      const r = await playbook('web1.ans.test');
      expect(r.timedOut, r.output).toBe(false);
      expect(r.status, r.output).toBe(0);
      await expectPlaybookResults('web1', { role: 'webserver', provider: 'local', rack: 'r3', inWeb: true, login: sshd.username });
    });

    it('a changed host key is refused by Ansible, by `ssh -F` and by hostbroker', async () => {
      const lab = deployment.byName('lab1');
      await lab.disconnect();
      // Restarting sshd also ends the connection Ansible kept open (ControlPersist).
      await changeHostKey(sshd);

      const byAnsible = await ansible('ansible', ['lab', '-m', 'ping'], 120_000);
      expect(byAnsible.timedOut).toBe(false);
      expect(byAnsible.status, byAnsible.output).toBe(4); // Ansible's "host unreachable"
      expect(byAnsible.output).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);

      const byOpenssh = await runClient('ssh', ['-F', join(work, 'ssh_config'), '-o', 'BatchMode=yes', 'lab1', 'true'], { cwd: work, env, timeoutMs: 30_000 });
      expect(byOpenssh.status).toBe(255);
      expect(byOpenssh.output).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/);

      const error = await freshConnectError(join(dir, 'broker'), broker.settings, lab.id);
      expect(error).toBeInstanceOf(HostConnectionError);
      expect((error as HostConnectionError).code).toBe('HOST_CONNECTION');
      expect((error as Error).message).toContain('lab1');
    });
  },
);
