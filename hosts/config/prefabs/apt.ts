/**
 * Apt: Debian packages installed (`install`, `update`) or removed (`clean`). Entries are package
 * names or paths to `.deb` files on the host. Only what differs is installed or removed.
 * @module
 */
import { lazySchema, z } from '../../../lib/zod.js';
import { quote } from '../../quote.js';
import { Prefab, type PrefabAction } from './prefab.js';

export const AptConfig = lazySchema(() =>
  z.object({
    /** Package names, or paths of `.deb` files on the host (`~/` expands). */
    packages: z.array(z.string().min(1)).min(1),
    /** Run `apt-get update` before installing missing packages. */
    update: z.boolean().default(false),
    /** Purge configuration files too in `clean`. */
    purge: z.boolean().default(false),
    /** Use `sudo -n`; `auto` (default): when the login user is not root. */
    sudo: z.union([z.boolean(), z.literal('auto')]).default('auto'),
    /** Seconds to wait for another apt/dpkg run to finish. */
    lockTimeout: z.number().int().min(0).default(120),
  }),
);
export type AptConfig = z.output<typeof AptConfig>;

/** Makes sure Debian packages are installed (or removed in `clean`). */
export class Apt extends Prefab<AptConfig> {
  readonly name = 'apt';
  override readonly schema = AptConfig;

  protected async actions(mode: string): Promise<PrefabAction[]> {
    if (!this.wantsPresent(mode) && mode !== 'clean') return [];
    const entries = await this.resolve();
    const installed = await this.installed(entries.map((e) => e.name));
    const sudo = this.needsSudo(this.cfg.sudo);
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    const lock = `-o DPkg::Lock::Timeout=${this.cfg.lockTimeout}`;
    if (this.wantsPresent(mode)) {
      const missing = entries.filter((e) => !installed.has(e.name));
      if (!missing.length) return [];
      return [
        {
          description: `package${missing.length > 1 ? 's' : ''} not installed: ${missing.map((m) => m.name).join(', ')}`,
          run: async () => {
            if (this.cfg.update) await this.run(`apt-get ${lock} update -q`, { env, sudo });
            await this.run(`apt-get ${lock} install -y -q --no-install-recommends -- ${missing.map((m) => quote(m.arg)).join(' ')}`, { env, sudo });
            return missing.map((m) => `installed ${m.name}`);
          },
        },
      ];
    }
    const present = entries.filter((e) => installed.has(e.name));
    if (!present.length) return [];
    return [
      {
        description: `package${present.length > 1 ? 's' : ''} installed: ${present.map((m) => m.name).join(', ')}`,
        run: async () => {
          await this.run(`apt-get ${lock} ${this.cfg.purge ? 'purge' : 'remove'} -y -q -- ${present.map((m) => quote(m.name)).join(' ')}`, { env, sudo });
          return present.map((m) => `${this.cfg.purge ? 'purged' : 'removed'} ${m.name}`);
        },
      },
    ];
  }

  /** Package names of the entries (a `.deb` file's name is read from its control data). */
  private async resolve(): Promise<Array<{ name: string; arg: string }>> {
    const out: Array<{ name: string; arg: string }> = [];
    for (const entry of this.cfg.packages) {
      if (!entry.endsWith('.deb')) {
        out.push({ name: entry, arg: entry });
        continue;
      }
      let path = this.remotePath(entry);
      if (!path.startsWith('/')) path = `./${path.replace(/^\.\//, '')}`;
      const r = await this.exec(`dpkg-deb -f ${quote(path)} Package`, { changed: false });
      out.push({ name: r.stdout.trim(), arg: path });
    }
    return out;
  }

  /** Which of these packages dpkg has installed (one command). */
  private async installed(names: string[]): Promise<Set<string>> {
    const r = await this.look(`dpkg-query -W -f='\${Package} \${Status}\\n' -- ${names.map(quote).join(' ')} 2>/dev/null`);
    const set = new Set<string>();
    for (const line of r.stdout.split('\n')) {
      const [name, ...status] = line.trim().split(/\s+/);
      if (name && status.join(' ') === 'install ok installed') set.add(name.split(':')[0]!);
    }
    return set;
  }
}
