/**
 * The cloud-init NoCloud seed: `meta-data` and `user-data` on an ISO labelled `cidata`, which
 * cloud-init reads on first boot to create the user with the SSH key.
 * @module
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { ProviderError, UserInputError } from '../../lib/errors.js';

const run = promisify(execFile);

/** What the seed holds. */
export interface SeedOptions {
  instanceId: string;
  hostname: string;
  username: string;
  publicKey: string;
  /** Extra cloud-config keys (`packages`, `runcmd`, ...). */
  extra?: Record<string, unknown>;
  /** Install and start qemu-guest-agent (when addresses come from the agent). */
  guestAgent?: boolean;
}

/** The seed's files. */
export interface Seed {
  'meta-data': string;
  'user-data': string;
}

/** Builds the NoCloud `meta-data` and `user-data` for one domain. */
export function cloudInitSeed(options: SeedOptions): Seed {
  const key = options.publicKey.trim();
  const config: Record<string, unknown> = { hostname: options.hostname };
  if (options.username === 'root') {
    Object.assign(config, { disable_root: false, ssh_authorized_keys: [key] });
  } else {
    config.users = [{ name: options.username, sudo: 'ALL=(ALL) NOPASSWD:ALL', shell: '/bin/bash', lock_passwd: true, ssh_authorized_keys: [key] }];
  }
  if (options.guestAgent) {
    config.packages = ['qemu-guest-agent'];
    config.runcmd = [['systemctl', 'enable', '--now', 'qemu-guest-agent']];
  }
  const merged = { ...config, ...options.extra };
  return {
    'meta-data': stringify({ 'instance-id': options.instanceId, 'local-hostname': options.hostname }),
    'user-data': `#cloud-config\n${stringify(merged)}`,
  };
}

/** Reads and checks a public key file (refuses a private key given by mistake). */
export async function readPublicKey(path: string): Promise<string> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (error) {
    throw new UserInputError(
      `[libvirt] cannot read the public key ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'}); give publicKeyPath, or put <privateKeyPath>.pub beside the private key.`,
      { cause: error },
    );
  }
  if (text.includes('PRIVATE KEY')) throw new UserInputError(`[libvirt] ${path} holds a private key; publicKeyPath must name the public key (.pub).`);
  if (!/^(ssh-|ecdsa-|sk-)[\w@.-]+ [A-Za-z0-9+/=]+/.test(text))
    throw new UserInputError(`[libvirt] ${path} is not an OpenSSH public key (expected "ssh-ed25519 AAAA..." or similar).`);
  return text;
}

/** ISO tools that can write a `cidata` seed, in order of preference. */
const ISO_TOOLS: ReadonlyArray<{ cmd: string; args: (out: string, dir: string) => string[] }> = [
  {
    cmd: 'genisoimage',
    args: (out, dir) => ['-quiet', '-output', out, '-volid', 'cidata', '-joliet', '-rock', join(dir, 'user-data'), join(dir, 'meta-data')],
  },
  { cmd: 'mkisofs', args: (out, dir) => ['-quiet', '-output', out, '-volid', 'cidata', '-joliet', '-rock', join(dir, 'user-data'), join(dir, 'meta-data')] },
  {
    cmd: 'xorriso',
    args: (out, dir) => ['-as', 'mkisofs', '-quiet', '-output', out, '-volid', 'cidata', '-joliet', '-rock', join(dir, 'user-data'), join(dir, 'meta-data')],
  },
];

/** Writes the seed ISO; returns its path in a new temp dir and a function removing that dir. */
export async function buildSeedIso(seed: Seed): Promise<{ path: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hb-seed-'));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    await writeFile(join(dir, 'user-data'), seed['user-data'], { mode: 0o600 });
    await writeFile(join(dir, 'meta-data'), seed['meta-data'], { mode: 0o600 });
    const out = join(dir, 'seed.iso');
    for (const tool of ISO_TOOLS) {
      try {
        await run(tool.cmd, tool.args(out, dir), { timeout: 60_000 });
        return { path: out, cleanup };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new ProviderError(
            'libvirt',
            `${tool.cmd} could not write the cloud-init seed: ${String((error as { stderr?: string }).stderr ?? (error as Error).message).trim()}`,
            { cause: error },
          );
        }
      }
    }
    throw new ProviderError('libvirt', 'no ISO tool to write the cloud-init seed: install genisoimage (apt-get install genisoimage) or xorriso.');
  } catch (error) {
    await cleanup();
    throw error;
  }
}
