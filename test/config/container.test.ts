/**
 * Host configuration on container hosts: busybox over the engine's exec API, and Debian with
 * sshd over SSH. Skips (saying why) only when no engine answers or the images are missing, and
 * never with CI=true. Images come from scripts/setup-test-env.sh.
 */
import { rm } from 'node:fs/promises';
import ssh2 from 'ssh2';
import { generateEd25519 } from '../../lib/ssh-keys.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { CommandError } from '../../lib/errors.js';
import { FileFromString, SitePlan, Whiteprint, gatherFacts } from '../../lib/index.js';
import type { Host } from '../../hosts/host.js';
import { BUSYBOX_IMAGE, SSHD_IMAGE, probeEngine, removeBrokerContainers, skipReason, tempDirectory } from '../helpers/engine.js';
import { describeApt, describePrefabs, prefabCases } from '../helpers/prefab-suite.js';

const probe = await probeEngine();
const skip = skipReason(probe);
if (skip) console.warn(`skipping configuration tests on container hosts: ${skip}`);

const key = await generateEd25519('bundle@test');
const directory = await tempDirectory('hb-config-container-');
let broker: Broker;
let execHost: Host;
let sshHost: Host;
const ids: Record<'exec' | 'ssh', { user: string; group: string }> = { exec: { user: '', group: '' }, ssh: { user: '', group: '' } };

class Motd extends Whiteprint<{ owner: string }> {
  readonly name = 'motd';
  static override defaults = { owner: 'ops' };
  override async execute(mode: string): Promise<void> {
    if (mode === 'install') await this.uploadTemplateString('{{ target.distro or "unknown" }} {{ target.kernel }} {{ owner }}\n', '~/motd');
    if (mode === 'broken') await this.exec('echo partial; echo "no such thing" >&2; false');
  }
}

beforeAll(async () => {
  if (skip) return;
  broker = new Broker({
    directory,
    settings: {
      logLevel: 'silent',
      bundles: {
        access: {
          keys: [key.public],
          scripts: [{ run: 'echo "bundled {{ name }} {{ purpose }}" > ~/bundled', template: true }],
        },
      },
    },
  });
  [execHost, sshHost] = await Promise.all([
    broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE, bundles: ['access'], bundleVars: { purpose: 'exec' } }),
    broker.checkout({ provider: 'container', image: SSHD_IMAGE, ssh: true, bundles: ['access'], bundleVars: { purpose: 'ssh' } }),
  ]);
  for (const [kind, host] of [
    ['exec', execHost],
    ['ssh', sshHost],
  ] as const) {
    const [user = '', group = ''] = (await host.execute('id -un; id -gn')).stdout.trim().split('\n');
    ids[kind] = { user, group };
  }
}, 180_000);

afterAll(async () => {
  await broker?.checkin({ all: true }).catch(() => undefined);
  if (probe.engine && broker) await removeBrokerContainers(probe.engine, broker.brokerId);
  await rm(directory, { recursive: true, force: true });
});

describe.skipIf(skip)('configuration on container hosts', () => {
  it('bundles ran on both kinds of host', async () => {
    expect((await execHost.execute('cat ~/bundled')).stdout).toBe(`bundled ${execHost.name} exec\n`);
    expect((await sshHost.execute('cat ~/bundled')).stdout).toBe(`bundled ${sshHost.name} ssh\n`);
  });

  it("a new SSH login with the bundle's key works on the sshd container", async () => {
    const c = sshHost.record.connection;
    if (c?.kind !== 'ssh') throw new Error('expected an SSH host');
    const login = (privateKey: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const client = new ssh2.Client();
        client
          .on('ready', () =>
            client.exec('id -un', (err, stream) => {
              if (err) return reject(err);
              let out = '';
              stream
                .on('data', (d: Buffer) => (out += d))
                .on('close', () => {
                  client.end();
                  resolve(out.trim());
                });
            }),
          )
          .on('error', reject)
          .connect({ host: c.host, port: c.port, username: c.username, privateKey, readyTimeout: 10_000 });
      });
    expect(await login(key.private)).toBe(c.username);
    await expect(login((await generateEd25519()).private)).rejects.toThrow(/authentication/i);
  });

  for (const kind of ['exec', 'ssh'] as const) {
    it(`facts and templates on the ${kind} host; a failing command reports its output`, async () => {
      const host = kind === 'exec' ? execHost : sshHost;
      const facts = await gatherFacts(host);
      expect(facts.user).toBe(ids[kind].user);
      expect(facts.cpuCount).toBeGreaterThan(0);
      if (kind === 'ssh') expect(facts).toMatchObject({ distro: 'debian', distroVersion: '12' });
      const plan = new SitePlan([
        { whiteprint: Motd },
        { whiteprint: FileFromString, config: { path: '~/fqdn', content: '{{ target.fqdn }}', template: true } },
      ]);
      const report = await host.apply(plan, 'install', { Motd: { owner: kind } });
      expect(report.ok, report.toString()).toBe(true);
      expect((await host.execute('cat ~/motd')).stdout).toBe(`${facts.distro || 'unknown'} ${facts.kernel} ${kind}\n`);
      expect((await host.apply(plan, 'install', { Motd: { owner: kind } })).changed).toBe(false);
      const failed = await host.apply(plan, 'broken');
      const error = failed.steps[0]!.error as CommandError;
      expect(error).toBeInstanceOf(CommandError);
      expect(error.message).toContain('no such thing');
      expect(error.stdout).toBe('partial\n');
    });
  }
});

describePrefabs(
  'container (exec, busybox)',
  () => execHost,
  () => prefabCases(ids.exec.user, ids.exec.group),
  skip,
);
describePrefabs(
  'container (SSH, Debian)',
  () => sshHost,
  () => prefabCases(ids.ssh.user, ids.ssh.group),
  skip,
);
describeApt('container (SSH, Debian)', () => sshHost, skip);
