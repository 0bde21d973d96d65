/**
 * Bundles (keys, files, scripts from settings) applied at checkout to real `local` hosts, and
 * checkin's `ifTestsPassed`.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { generateEd25519 } from '../lib/ssh-keys.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker, type ProgressEvent } from '../lib/broker/index.js';
import { applyBundles } from '../lib/bundles.js';
import { CommandError, SettingsError, UserInputError } from '../lib/errors.js';
import type { Host } from '../hosts/host.js';
import type { SettingsInput } from '../lib/settings.js';
import { brokerFixture, type BrokerFixture } from './helpers/config-host.js';

// Keys ssh2 can read back (its own generator fails 1 in 256: see lib/ssh-keys.ts).
const alice = await generateEd25519('alice@test');
const bob = await generateEd25519('bob@test');
const mallory = await generateEd25519();

const settings: SettingsInput = {
  bundles: {
    dev: {
      description: 'keys, a dotfile and setup scripts',
      keys: ['keys/alice.pub', bob.public],
      files: [
        { source: 'files/screenrc', path: '~/.screenrc', mode: '0600' },
        { source: 'files/motd.j2', path: '~/etc/motd', template: true },
      ],
      scripts: ['scripts/one.sh', 'scripts/two.sh', { run: 'echo inline >> ~/order' }, 'scripts/three.py'],
    },
    broken: {
      scripts: [{ run: 'echo ok so far > ~/partial' }, { run: 'echo about to fail; echo the disk is on fire >&2; exit 7' }, { run: 'echo never > ~/never' }],
    },
    badMode: { files: [{ source: 'files/screenrc', path: '~/x', mode: 644 }] },
    needsVar: { scripts: [{ run: 'echo {{ release }}', template: true }] },
  },
};

let fx: BrokerFixture;

beforeAll(async () => {
  fx = await brokerFixture(settings);
  const d = fx.directory;
  await Promise.all(['keys', 'files', 'scripts'].map((f) => mkdir(join(d, f), { recursive: true })));
  await writeFile(join(d, 'keys', 'alice.pub'), `# alice's key\n${alice.public}\n`);
  await writeFile(join(d, 'files', 'screenrc'), 'startup_message off\n');
  await writeFile(join(d, 'files', 'motd.j2'), 'this is {{ name }} ({{ shortName }}) for {{ team }}\n');
  await writeFile(join(d, 'scripts', 'one.sh'), 'echo one > ~/order\n');
  await writeFile(join(d, 'scripts', 'two.sh'), '# hostbroker-template\necho "two {{ name }} {{ team }} $(pwd)" >> ~/order\n');
  await writeFile(
    join(d, 'scripts', 'three.py'),
    '#!/usr/bin/env python3\nimport os\nopen(os.path.expanduser("~/order"), "a").write("three {{ not templated }}\\n")\n',
  );
});

afterAll(async () => {
  await fx?.close();
});

/** Logs in over SSH with a private key, as a user would with the bundle's key. */
function sshLogin(host: Host, privateKey: string): Promise<string> {
  const c = host.record.connection;
  if (c?.kind !== 'ssh') throw new Error('not an SSH host');
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client
      .on('ready', () => {
        client.exec('echo logged in as $(id -un)', (err, stream) => {
          if (err) return reject(err);
          let out = '';
          stream
            .on('data', (d: Buffer) => (out += d))
            .on('close', () => {
              client.end();
              resolve(out.trim());
            });
        });
      })
      .on('error', reject)
      .connect({ host: c.host, port: c.port, username: c.username, privateKey, readyTimeout: 10_000 });
  });
}

async function localHostFolders(): Promise<string[]> {
  return readdir(join(fx.directory, 'local-hosts')).catch(() => []);
}

describe('bundles at checkout', () => {
  it('installs keys, files and scripts in order, with templating where asked', async () => {
    const host = await fx.broker.checkout({ provider: 'local', bundles: ['dev'], bundleVars: { team: 'qa' } });
    try {
      const order = (await host.execute('cat ~/order')).stdout;
      const home = (await host.execute('pwd')).stdout.trim();
      expect(order).toBe(`one\ntwo ${host.name} qa ${home}\ninline\nthree {{ not templated }}\n`);
      expect((await host.execute('cat ~/.screenrc; stat -c %a ~/.screenrc')).stdout).toBe('startup_message off\n600\n');
      expect((await host.execute('cat ~/etc/motd')).stdout).toBe(`this is ${host.name} (${host.name.split('.')[0]}) for qa\n`);

      const keys = (await host.execute('cat ~/.ssh/authorized_keys; stat -c %a ~/.ssh ~/.ssh/authorized_keys')).stdout;
      expect(keys).toBe(`${alice.public}\n${bob.public}\n700\n600\n`);
      // A new SSH login with the bundle's key works; a key the bundle did not add is refused.
      expect(await sshLogin(host, alice.private)).toMatch(/^logged in as /);
      expect(await sshLogin(host, bob.private)).toMatch(/^logged in as /);
      await expect(sshLogin(host, mallory.private)).rejects.toThrow(/authentication/i);

      // Applying again adds no duplicate keys.
      await applyBundles(host, ['dev'], fx.broker.settings, { team: 'qa' }, { directory: fx.directory });
      expect((await host.execute('grep -c . ~/.ssh/authorized_keys')).stdout.trim()).toBe('2');
    } finally {
      await host.checkin();
    }
  });

  it('keeps keys already in authorized_keys, even without a final newline', async () => {
    const host = await fx.broker.checkout({ provider: 'local' });
    try {
      await host.execute(`mkdir -p ~/.ssh && printf '%s' ${JSON.stringify(mallory.public)} > ~/.ssh/authorized_keys`);
      await applyBundles(host, ['dev'], fx.broker.settings, { team: 'x' }, { directory: fx.directory });
      expect((await host.execute('cat ~/.ssh/authorized_keys')).stdout).toBe(`${mallory.public}\n${alice.public}\n${bob.public}\n`);
    } finally {
      await host.checkin();
    }
  });

  it('a failing script fails the checkout with its output, stops the bundle, and releases the host', async () => {
    const before = await fx.broker.inventory();
    const error = await fx.broker.checkout({ provider: 'local', bundles: ['broken'] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CommandError);
    const e = error as CommandError;
    expect(e.status).toBe(7);
    expect(e.message).toContain('bundle `broken`');
    expect(e.message).toContain('about to fail');
    expect(e.message).toContain('the disk is on fire');
    expect(await fx.broker.inventory()).toEqual(before);
    expect(await localHostFolders()).toEqual([]);
  });

  it('rejects an invalid bundle naming the key, and an unknown bundle naming the known ones; nothing is left behind', async () => {
    await expect(fx.broker.checkout({ provider: 'local', bundles: ['badMode'] })).rejects.toThrow(SettingsError);
    await expect(fx.broker.checkout({ provider: 'local', bundles: ['badMode'] })).rejects.toThrow(
      /bundles\.badMode\.files\.0\.mode: write the mode as a quoted octal string/,
    );
    await expect(fx.broker.checkout({ provider: 'local', bundles: ['nope'] })).rejects.toThrow(UserInputError);
    await expect(fx.broker.checkout({ provider: 'local', bundles: ['nope'] })).rejects.toThrow(
      /no bundle `nope`; known bundles: dev, broken, badMode, needsVar/,
    );
    await expect(fx.broker.checkout({ provider: 'local', bundles: ['needsVar'] })).rejects.toThrow(/`release`/);
    // Bundle names and their settings are checked before anything is provisioned.
    const events: ProgressEvent[] = [];
    const watching = new Broker({ directory: fx.directory, settings: { ...settings, logLevel: 'silent' }, onProgress: (e) => events.push(e) });
    await expect(watching.checkout({ provider: 'local', bundles: ['dev', 'nope'] })).rejects.toThrow(/no bundle `nope`/);
    await expect(watching.checkout({ provider: 'local', bundles: ['badMode'] })).rejects.toThrow(SettingsError);
    expect(events).toEqual([]);
    expect(await fx.broker.inventory()).toEqual([]);
    expect(await localHostFolders()).toEqual([]);
  });

  it('applies default bundles from settings to every checkout', async () => {
    const other = await brokerFixture({
      checkout: { bundles: ['base'] },
      bundles: { base: { scripts: [{ run: 'echo "based {{ name }} {{ extra | default(\'none\') }}" > ~/base', template: true }] } },
    });
    try {
      const host = await other.broker.checkout({ provider: 'local' });
      expect((await host.execute('cat ~/base')).stdout).toBe(`based ${host.name} none\n`);
      await host.checkin();
    } finally {
      await other.close();
    }
  });
});

describe('checkin with ifTestsPassed', () => {
  const junit = (failures: number, errors: number): string =>
    `<?xml version="1.0"?>\n<testsuites><testsuite name="s" tests="2" failures="${failures}" errors="${errors}"><testcase name="a"/>${failures ? '<testcase name="b"><failure message="boom"/></testcase>' : '<testcase name="b"/>'}</testsuite></testsuites>\n`;

  it('keeps the host (and says why) when the report has failures or errors, and releases it when all passed', async () => {
    const failed = join(fx.directory, 'failed.xml');
    const errored = join(fx.directory, 'errored.xml');
    const passed = join(fx.directory, 'passed.xml');
    await writeFile(failed, junit(1, 0));
    await writeFile(errored, junit(0, 1));
    await writeFile(passed, junit(0, 0));
    const host = await fx.broker.checkout({ provider: 'local' });
    const folder = join(fx.directory, 'local-hosts', host.id);

    await fx.broker.checkin(host, { ifTestsPassed: failed });
    const kept = (await fx.broker.inventory()).find((r) => r.id === host.id);
    expect(kept?.kept?.reason).toMatch(/tests did not pass \(2 tests, 1 failures, 0 errors/);
    expect((await host.execute('echo still here')).stdout).toBe('still here\n');

    await fx.broker.checkin(host, { ifTestsPassed: errored });
    expect((await fx.broker.inventory()).some((r) => r.id === host.id)).toBe(true);
    expect(existsSync(folder)).toBe(true);

    await fx.broker.checkin(host, { ifTestsPassed: passed });
    expect((await fx.broker.inventory()).some((r) => r.id === host.id)).toBe(false);
    expect(existsSync(folder)).toBe(false);
  });

  it('refuses a file that is not a JUnit report and checks nothing in', async () => {
    const host = await fx.broker.checkout({ provider: 'local' });
    const bogus = join(fx.directory, 'bogus.xml');
    await writeFile(bogus, '<html/>');
    await expect(fx.broker.checkin(host, { ifTestsPassed: bogus })).rejects.toThrow(/not a JUnit XML report/);
    await expect(fx.broker.checkin(host, { ifTestsPassed: join(fx.directory, 'missing.xml') })).rejects.toThrow(/cannot read the JUnit report/);
    expect((await fx.broker.inventory()).some((r) => r.id === host.id)).toBe(true);
    await fx.broker.checkin(host);
  });
});
