/**
 * What the native binding (@unraid/libvirt) cannot do — storage volumes and guest addresses —
 * done with `virsh` on the same connection URI.
 * @module
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProviderError } from '../../lib/errors.js';
import { scrub } from '../../lib/secrets.js';
import { overlayVolumeXml } from './xml.js';

/** Messages libvirt gives for a volume that does not exist. */
const VOLUME_MISSING = /Storage volume not found|no storage vol with matching|failed to get vol/i;

/** Runs virsh commands against one URI. */
export class Virsh {
  constructor(
    readonly uri: string,
    readonly command = 'virsh',
    private readonly timeoutMs = 120_000,
  ) {}

  /** Runs `virsh -c URI <args>`; a failure becomes a ProviderError with virsh's message. */
  run(args: string[], signal?: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(this.command, ['-q', '-c', this.uri, ...args], { timeout: this.timeoutMs, signal, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(
            new ProviderError(
              'libvirt',
              `\`${this.command}\` was not found; install libvirt-clients (it provides virsh), or set \`virsh\` in the libvirt settings to its path.`,
              { cause: error },
            ),
          );
        }
        const message = scrub(
          String(stderr)
            .trim()
            .replace(/^error: /gm, '') || error.message,
        );
        reject(new ProviderError('libvirt', `virsh ${args[0]} on ${this.uri} failed: ${message}`, { cause: error, status: 'virsh' }));
      });
    });
  }

  /** Path of a volume in a pool. */
  async volumePath(pool: string, name: string): Promise<string> {
    return (await this.run(['vol-path', '--pool', pool, name])).trim();
  }

  /** Creates a qcow2 overlay `name` in `pool` on top of `base` (a volume in the pool or an absolute path). */
  async createOverlay(pool: string, name: string, capacityBytes: number, base: string, baseFormat: 'qcow2' | 'raw'): Promise<void> {
    const backing = base.startsWith('/') ? base : await this.volumePath(pool, base);
    await this.withTempFile(overlayVolumeXml(name, capacityBytes, backing, baseFormat), (file) => this.run(['vol-create', pool, file]));
  }

  /** Uploads a local file as a new raw volume. */
  async uploadVolume(pool: string, name: string, file: string): Promise<void> {
    const { size } = await stat(file);
    await this.run(['vol-create-as', pool, name, String(size), '--format', 'raw']);
    try {
      await this.run(['vol-upload', '--pool', pool, name, file]);
    } catch (error) {
      await this.deleteVolume(pool, name).catch(() => undefined);
      throw error;
    }
  }

  /** Deletes a volume; one that is already gone counts as deleted. */
  async deleteVolume(pool: string, name: string): Promise<void> {
    try {
      await this.run(['vol-delete', '--pool', pool, name]);
    } catch (error) {
      if (!(error instanceof ProviderError && VOLUME_MISSING.test(error.message))) throw error;
    }
  }

  /** IPv4 addresses of a domain from `source` (`lease`, `agent` or `arp`); empty when none yet. */
  async addresses(domain: string, source: 'lease' | 'agent' | 'arp', signal?: AbortSignal): Promise<string[]> {
    return parseDomifaddr(await this.run(['domifaddr', domain, '--source', source], signal));
  }

  private async withTempFile<T>(content: string, use: (file: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'hb-virsh-'));
    try {
      const file = join(dir, 'volume.xml');
      await writeFile(file, content);
      return await use(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** IPv4 addresses (without prefix) from `virsh domifaddr` output, skipping loopback. */
export function parseDomifaddr(output: string): string[] {
  const out: string[] = [];
  for (const line of output.split('\n')) {
    const m = /\bipv4\s+(\d+\.\d+\.\d+\.\d+)(?:\/\d+)?/.exec(line);
    if (m && !m[1]!.startsWith('127.')) out.push(m[1]!);
  }
  return out;
}
