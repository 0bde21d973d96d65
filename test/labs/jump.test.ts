/**
 * Reaching hosts behind bastions, with real sshds in network namespaces this test makes: a host
 * behind one bastion and one behind two, neither reachable directly; a static checkout, commands
 * (200 at once), a 64 MiB round trip and a bastion restart, all through the jump; OpenSSH
 * (`ssh -F` with hostbroker's config, and Ansible's ProxyCommand) taking the same route; a real
 * ssh-agent, encrypted keys and refused logins.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Host } from '../../hosts/host.js';
import { SshTransport } from '../../hosts/ssh-transport.js';
import { Session } from '../../hosts/session.js';
import { Broker, HostConnectionError } from '../../lib/index.js';
import type { JumpHost, SshConnection } from '../../lib/records.js';
import { lookupSshConfig } from '../../lib/ssh-config-file.js';
import { hostVars, renderSshConfig, type DeploymentMember } from '../../lib/topology/outputs.js';
import { type Lab, labSkipReason, startLab } from './netns.js';
import { NODE_ARGS } from '../helpers/cli-process.js';

const run = promisify(execFile);
const skip = labSkipReason();

/** Whether a TCP connection from this namespace to host:port gets anywhere (errors are the answer). */
function tcpReachable(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

function hop(s: Lab['bastion1'], extra: Partial<JumpHost> = {}): JumpHost {
  return { host: s.host, port: s.port, username: s.username, privateKeyPath: s.privateKeyPath, ...extra };
}

/** The addresses a host's interfaces have (which machine a command ran on). */
async function addressesOf(host: Host): Promise<string> {
  return (await host.execute('ip -o -4 addr show')).stdout;
}

describe.skipIf(Boolean(skip))(`jump hosts, agents and keys against real sshds in network namespaces${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: Lab;
  let dir: string;
  let broker: Broker;
  let one: Host;
  let two: Host;

  beforeAll(async () => {
    lab = await startLab();
    dir = await mkdtemp(join(tmpdir(), 'hb-jump-'));
    // A pattern block first: were patterns applied, its User would win and the login fail.
    await writeFile(
      join(dir, 'ssh_config_user'),
      [
        'Host hb-lab-*',
        '  User nobody',
        'Match host hb-lab-target',
        '  Port 2222',
        'Host hb-lab-b1',
        `  HostName ${lab.bastion1.host}`,
        `  User ${lab.bastion1.username}`,
        `  IdentityFile ${lab.bastion1.privateKeyPath}`,
        'Host hb-lab-b2',
        `  HostName ${lab.bastion2.host}`,
        `  User ${lab.bastion2.username}`,
        `  IdentityFile ${lab.bastion2.privateKeyPath}`,
        'Host hb-lab-target',
        `  HostName ${lab.target.host}`,
        `  User ${lab.target.username}`,
        `  IdentityFile ${lab.target.privateKeyPath}`,
        '  ProxyJump hb-lab-b1,hb-lab-b2',
        '',
      ].join('\n'),
    );
    broker = new Broker({
      directory: dir,
      settings: {
        logLevel: 'silent',
        ssh: { readyTimeout: '20s', keepaliveInterval: '2s' },
        static: {
          hosts: [
            // Behind one bastion: the second bastion's sshd is a host in its own right.
            {
              name: 'one',
              hostname: lab.bastion2.host,
              port: 22,
              username: lab.bastion2.username,
              privateKeyPath: lab.bastion2.privateKeyPath,
              jump: [hop(lab.bastion1)],
            },
            {
              name: 'two',
              hostname: lab.target.host,
              port: 22,
              username: lab.target.username,
              privateKeyPath: lab.target.privateKeyPath,
              jump: [hop(lab.bastion1), hop(lab.bastion2)],
            },
            // Everything from the OpenSSH config: address, user, key and the two jump hosts.
            { name: 'aliased', hostname: 'hb-lab-target', sshConfig: join(dir, 'ssh_config_user') },
            // No jump of its own: the checkout request names it.
            { name: 'plain', hostname: lab.target.host, username: lab.target.username, privateKeyPath: lab.target.privateKeyPath },
          ],
        },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await broker?.checkin({ all: true }).catch(() => undefined);
    await broker?.close().catch(() => undefined);
    await lab?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('cannot reach the hosts behind the bastions directly, only the first bastion', async () => {
    expect(await tcpReachable(lab.bastion1.host, 22)).toBe('connected');
    expect(await tcpReachable(lab.bastion2.host, 22)).not.toBe('connected');
    expect(await tcpReachable(lab.target.host, 22)).not.toBe('connected');
    // Without its jump hosts, a connection to the target fails as unreachable.
    const direct = new Session(new SshTransport({ connection: { ...(await targetConnection()), jump: [] }, connectTimeout: 3000 }));
    const error = await direct.run('true').catch((e: unknown) => e);
    await direct.close();
    expect(error).toBeInstanceOf(HostConnectionError);
    expect((error as HostConnectionError).reason).toBe('unreachable');
  });

  async function targetConnection(): Promise<SshConnection> {
    return { kind: 'ssh', host: lab.target.host, port: 22, username: lab.target.username, privateKeyPath: lab.target.privateKeyPath };
  }

  it('checks out static machines behind one and two bastions and runs commands on them', async () => {
    one = await broker.checkout({ provider: 'static', name: 'one' });
    two = await broker.checkout({ provider: 'static', name: 'two' });
    expect(await addressesOf(one)).toContain(lab.bastion2.host);
    const onTarget = await addressesOf(two);
    expect(onTarget).toContain(lab.target.host);
    expect(onTarget).not.toContain(lab.bastion2.host);
    const record = (await broker.find(two.id))!.connection as SshConnection;
    expect(record.jump?.map((h) => h.host)).toEqual([lab.bastion1.host, lab.bastion2.host]);
    // The jump hosts' keys were pinned in the record and listed for OpenSSH.
    const served = async (s: Lab['bastion1']) => (await readFile(join(s.dir, 'host_key.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
    expect(record.jump?.map((h) => h.hostPublicKey)).toEqual([await served(lab.bastion1), await served(lab.bastion2)]);
    const knownHosts = await readFile(join(dir, 'known_hosts'), 'utf8');
    for (const s of [lab.bastion1, lab.bastion2, lab.target]) expect(knownHosts).toContain(`${s.host} ${await served(s)}`);
  });

  it('runs 200 commands at once through two bastions over one connection to the first', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => two.execute(`echo n-${i}`)));
    expect(results.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 200 }, (_, i) => `n-${i}`));
    expect(results.every((r) => r.status === 0)).toBe(true);
    await one.execute('true');
    // Both hosts, and every connection to them, share one SSH connection to bastion 1.
    const { stdout } = await lab.exec(lab.namespaces[0]!, 'ss', '-tnH', 'state', 'established', `( sport = :22 )`);
    expect(stdout.trim().split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('moves 64 MiB there and back through the jump', async () => {
    const local = join(dir, 'big.bin');
    const data = randomBytes(64 << 20);
    await writeFile(local, data);
    await two.session.write({ localPath: local }, '/tmp/hb-jump-big.bin');
    const remoteSum = (await two.execute('sha256sum /tmp/hb-jump-big.bin')).stdout.split(' ')[0];
    const expected = createHash('sha256').update(data).digest('hex');
    expect(remoteSum).toBe(expected);
    const back = await two.session.read('/tmp/hb-jump-big.bin');
    expect(createHash('sha256').update(back).digest('hex')).toBe(expected);
    await two.execute('rm -f /tmp/hb-jump-big.bin');
  }, 180_000);

  it('survives a restart of the first bastion: a command running then fails as dropped, the next ones reconnect', async () => {
    const running = two.execute('sleep 30; echo never').catch((e: unknown) => e);
    // The command has started once the target shows it.
    for (let i = 0; i < 100 && (await two.execute('pgrep -f "sleep 30"').catch(() => ({ status: 1 }))).status !== 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    await lab.bastion1.restart();
    const error = await running;
    expect(error).toBeInstanceOf(HostConnectionError);
    expect((error as HostConnectionError).reason).toBe('dropped');
    const after = await Promise.all(Array.from({ length: 20 }, (_, i) => two.execute(`echo back-${i}`)));
    expect(after.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 20 }, (_, i) => `back-${i}`));
    expect((await one.execute('echo one-back')).stdout).toBe('one-back\n');
    await two.execute('pkill -f "sleep 30"').catch(() => undefined);
  }, 120_000);

  it('OpenSSH reaches the target with `ssh -F` and hostbroker’s config, and with Ansible’s ProxyCommand', async () => {
    const record = (await broker.find(two.id))!;
    const member = { entry: { name: 'two', fqdn: 'two.lab.test', domain: 'lab.test', groups: [], meta: {}, vars: {} }, record } as unknown as DeploymentMember;
    const knownHostsFile = join(dir, 'known_hosts');
    const config = join(dir, 'ssh_config');
    await writeFile(config, renderSshConfig([member], { knownHostsFile }));
    expect(await readFile(config, 'utf8')).toContain(
      `ProxyJump ${lab.bastion1.username}@${lab.bastion1.host}:22,${lab.bastion2.username}@${lab.bastion2.host}:22`,
    );
    const viaConfig = await run('ssh', ['-F', config, '-o', 'BatchMode=yes', 'two', 'ip -o -4 addr show'], { timeout: 60_000 });
    expect(viaConfig.stdout).toContain(lab.target.host);

    // Ansible hands ansible_ssh_common_args to ssh after splitting them like a shell.
    const vars = hostVars(member, { knownHostsFile });
    const common = String(vars.ansible_ssh_common_args);
    expect(common).toContain('ProxyCommand=');
    const viaAnsibleArgs = await run(
      'sh',
      [
        '-c',
        `ssh -F /dev/null -o BatchMode=yes ${common} -i "$1" -p 22 "$2" 'ip -o -4 addr show'`,
        'sh',
        lab.target.privateKeyPath,
        `${lab.target.username}@${lab.target.host}`,
      ],
      { timeout: 60_000 },
    );
    expect(viaAnsibleArgs.stdout).toContain(lab.target.host);
  }, 120_000);

  it('reads HostName, User, IdentityFile and ProxyJump from an OpenSSH config, ignoring Host patterns and Match with a warning', async () => {
    const aliased = await broker.checkout({ provider: 'static', name: 'aliased' });
    expect(await addressesOf(aliased)).toContain(lab.target.host);
    const c = (await broker.find(aliased.id))!.connection as SshConnection;
    expect(c).toMatchObject({ host: lab.target.host, port: 22, username: lab.target.username, privateKeyPath: lab.target.privateKeyPath });
    expect(c.jump?.map((h) => [h.host, h.username, h.privateKeyPath])).toEqual([
      [lab.bastion1.host, lab.bastion1.username, lab.bastion1.privateKeyPath],
      [lab.bastion2.host, lab.bastion2.username, lab.bastion2.privateKeyPath],
    ]);
    await broker.checkin(aliased);
    const warnings: string[] = [];
    lookupSshConfig('hb-lab-target', join(dir, 'ssh_config_user'), (m) => warnings.push(m));
    expect(warnings.some((w) => w.includes('Host hb-lab-*'))).toBe(true);
    expect(warnings.some((w) => w.includes('Match host hb-lab-target'))).toBe(true);
  });

  it('takes the jump hosts from the checkout request', async () => {
    await broker.checkin(two);
    const plain = await broker.checkout({ provider: 'static', name: 'plain', jump: [hop(lab.bastion1), hop(lab.bastion2)] });
    expect(await addressesOf(plain)).toContain(lab.target.host);
    expect(((await broker.find(plain.id))!.connection as SshConnection).jump).toHaveLength(2);
    await broker.checkin(plain);
    await expect(broker.checkout({ provider: 'static', name: 'plain', jump: [{ host: lab.bastion1.host }] as never })).rejects.toMatchObject({
      code: 'USER_INPUT',
    });
  });

  it('takes the jump hosts from `hostbroker checkout --jump` (as ssh -J)', async () => {
    const cliDir = await mkdtemp(join(tmpdir(), 'hb-jump-cli-'));
    // One key for every hop: the command line names hosts, settings name the key.
    const pub = await readFile(`${lab.target.privateKeyPath}.pub`, 'utf8');
    for (const s of [lab.bastion1, lab.bastion2]) await appendFile(join(s.dir, 'authorized_keys'), pub);
    await writeFile(
      join(cliDir, 'broker_settings.yaml'),
      `ssh: { privateKeyPath: ${lab.target.privateKeyPath} }\nstatic: { hosts: [{ name: plain, hostname: ${lab.target.host}, username: ${lab.target.username} }] }\n`,
    );
    const hb = (...args: string[]) =>
      run(process.execPath, [...NODE_ARGS, ...args], { env: { ...process.env, BROKER_DIRECTORY: cliDir, CI: '' }, timeout: 60_000 });
    try {
      const jump = `${lab.bastion1.username}@${lab.bastion1.host}:22,${lab.bastion2.username}@${lab.bastion2.host}`;
      const [record] = JSON.parse((await hb('checkout', '--provider', 'static', '--name', 'plain', '--jump', jump, '--json')).stdout) as [
        { connection: SshConnection },
      ];
      expect(record.connection.jump?.map((h) => `${h.username}@${h.host}:${h.port}`)).toEqual([
        `${lab.bastion1.username}@${lab.bastion1.host}:22`,
        `${lab.bastion2.username}@${lab.bastion2.host}:22`,
      ]);
      expect((await hb('ssh', 'plain', 'ip -o -4 addr show')).stdout).toContain(lab.target.host);
    } finally {
      await hb('checkin', '--all').catch(() => undefined);
      await rm(cliDir, { recursive: true, force: true });
    }
  }, 120_000);

  describe('logins', () => {
    let keys: string;
    let agent: ReturnType<typeof spawn> | undefined;
    const savedSock = process.env.SSH_AUTH_SOCK;

    beforeAll(async () => {
      keys = await mkdtemp(join(tmpdir(), 'hb-keys-'));
    });
    afterAll(async () => {
      agent?.kill('SIGTERM');
      if (savedSock === undefined) delete process.env.SSH_AUTH_SOCK;
      else process.env.SSH_AUTH_SOCK = savedSock;
      delete process.env.HB_TEST_PASSPHRASE;
      await rm(keys, { recursive: true, force: true });
    });

    /** A new key, authorized on bastion 1 and the target. */
    async function newKey(name: string, passphrase = ''): Promise<string> {
      const path = join(keys, name);
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-f', path]);
      const pub = await readFile(`${path}.pub`, 'utf8');
      for (const s of [lab.bastion1, lab.target]) await appendFile(join(s.dir, 'authorized_keys'), pub);
      return path;
    }

    function through(connection: Partial<SshConnection>, jumpAuth: Partial<JumpHost> = {}): Session {
      const jump = [hop(lab.bastion1, jumpAuth), hop(lab.bastion2)];
      return new Session(
        new SshTransport({ connection: { kind: 'ssh', host: lab.target.host, port: 22, username: lab.target.username, jump, ...connection } }),
      );
    }

    it('logs in to a bastion and the target with a real ssh-agent holding a key that is not on disk, and forwards it when asked', async () => {
      const path = await newKey('agent_key');
      const socket = join(keys, 'agent.sock');
      agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
      for (let i = 0; i < 100; i++) {
        if (
          await run('ssh-add', ['-l'], { env: { ...process.env, SSH_AUTH_SOCK: socket } }).then(
            () => true,
            (e: { code?: number }) => e.code === 1,
          )
        )
          break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await run('ssh-add', [path], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
      const fingerprint = (await run('ssh-keygen', ['-l', '-f', `${path}.pub`])).stdout.split(' ')[1]!;
      await rm(path);
      process.env.SSH_AUTH_SOCK = socket;
      const session = through({ agent: true, forwardAgent: true }, { privateKeyPath: undefined, agent: true });
      try {
        const r = await session.run('ssh-add -l');
        expect(r.status).toBe(0);
        // The forwarded agent answers on the target with the key loaded here.
        expect(r.stdout).toContain(fingerprint);
      } finally {
        await session.close();
      }
      // Without an agent, asking for one is a clear input error.
      delete process.env.SSH_AUTH_SOCK;
      const none = through({ agent: true });
      await expect(none.run('true')).rejects.toMatchObject({ code: 'USER_INPUT' });
      await none.close();
      process.env.SSH_AUTH_SOCK = socket;
    });

    it('decrypts an encrypted key with the passphrase from the environment; a wrong one is a clear passphrase error', async () => {
      const path = await newKey('encrypted_key', 'correct horse');
      process.env.HB_TEST_PASSPHRASE = 'correct horse';
      const ok = through({ privateKeyPath: path, passphraseEnv: 'HB_TEST_PASSPHRASE' });
      try {
        expect((await ok.run('echo decrypted')).stdout).toBe('decrypted\n');
      } finally {
        await ok.close();
      }
      process.env.HB_TEST_PASSPHRASE = 'wrong battery';
      const wrong = through({ privateKeyPath: path, passphraseEnv: 'HB_TEST_PASSPHRASE' });
      const error = await wrong.run('true').catch((e: unknown) => e);
      await wrong.close();
      expect(error).toMatchObject({ code: 'HOST_CONNECTION', reason: 'passphrase' });
      expect((error as Error).message).toContain('HB_TEST_PASSPHRASE');
      expect((error as Error).message).not.toContain('wrong battery');
      // No passphrase named at all: the same reason, and what to do.
      const unnamed = through({ privateKeyPath: path });
      await expect(unnamed.run('true')).rejects.toMatchObject({ code: 'HOST_CONNECTION', reason: 'passphrase' });
      await unnamed.close();
    });

    it('names the methods tried and still accepted when a bastion refuses the login', async () => {
      const stranger = join(keys, 'stranger');
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
      delete process.env.SSH_AUTH_SOCK;
      const session = through({ privateKeyPath: lab.target.privateKeyPath }, { privateKeyPath: stranger });
      const error = await session.run('true').catch((e: unknown) => e);
      await session.close();
      expect(error).toMatchObject({ code: 'HOST_CONNECTION', reason: 'auth', via: `${lab.bastion1.username}@${lab.bastion1.host}:22` });
      expect((error as HostConnectionError).methodsTried).toEqual([`publickey ${stranger}`]);
      expect((error as HostConnectionError).methodsAccepted).toContain('publickey');
      expect((error as HostConnectionError).toJSON()).toMatchObject({ reason: 'auth', methodsTried: [`publickey ${stranger}`] });
    });
  });
});
