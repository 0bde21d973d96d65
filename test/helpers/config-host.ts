/**
 * Fixtures for configuration tests: a Broker in a temp directory and `local` hosts from it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker/index.js';
import type { SettingsInput } from '../../lib/settings.js';
import type { Host } from '../../hosts/host.js';

export interface BrokerFixture {
  broker: Broker;
  directory: string;
  close(): Promise<void>;
}

/** A Broker with its own directory (settings given in code). */
export async function brokerFixture(settings: SettingsInput = {}): Promise<BrokerFixture> {
  const directory = await mkdtemp(join(tmpdir(), 'hb-config-'));
  const broker = new Broker({ directory, settings: { logLevel: 'silent', ...settings } });
  return {
    broker,
    directory,
    async close() {
      await broker.checkin({ all: true }).catch(() => undefined);
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** A checked-out `local` host and its broker. */
export async function localHost(settings: SettingsInput = {}): Promise<BrokerFixture & { host: Host }> {
  const fx = await brokerFixture(settings);
  const host = await fx.broker.checkout({ provider: 'local' });
  return { ...fx, host };
}

/**
 * A listing of everything under a remote folder: path, type, mode, owner, group, size, inode,
 * mtime and link target, so that any write, replace, chmod or chown shows up.
 */
export async function snapshot(host: Host, dir: string): Promise<string> {
  const r = await host.execute(`cd ${dir} && find . -exec stat -c '%n %F %a %U %G %s %i %Y %N' {} + | sort`);
  if (r.status !== 0) throw new Error(`snapshot of ${dir} failed: ${r.stderr}`);
  return r.stdout;
}
