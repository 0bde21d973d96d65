/**
 * Pip3: Python packages installed (`install`, `update`) or uninstalled (`clean`) with pip.
 * Entries are requirement names or paths of wheel/sdist files on the host.
 * @module
 */
import { lazySchema, z } from '../../../lib/zod.js';
import { quote } from '../../quote.js';
import { Prefab, type PrefabAction } from './prefab.js';

export const Pip3Config = lazySchema(() =>
  z.object({
    /** Distribution names (`requests`, `requests==2.31.0`) or paths of `.whl` / `.tar.gz` files on the host. */
    packages: z.array(z.string().min(1)).min(1),
    /** The pip command, e.g. `pip3`, `python3 -m pip`, or a virtualenv's `~/venv/bin/pip`. */
    pip: z.string().default('pip3'),
    /** Install into the user site (`--user`). */
    user: z.boolean().default(false),
    /** More arguments for `pip install`, e.g. `['--no-index', '--find-links', '/srv/wheels']`. */
    installArgs: z.array(z.string()).default([]),
  }),
);
export type Pip3Config = z.output<typeof Pip3Config>;

/** PEP 503 normalized name: lowercase, runs of `-_.` become `-`. */
export function normalizeDistName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}

/** Distribution name of a requirement or a wheel/sdist file name. */
export function distNameOf(entry: string): string {
  const base = entry.split('/').pop()!;
  if (base.endsWith('.whl')) return normalizeDistName(base.split('-')[0]!);
  const sdist = /^(.*)-[^-]+\.(tar\.gz|zip|tar\.bz2)$/.exec(base);
  if (sdist) return normalizeDistName(sdist[1]!);
  return normalizeDistName(entry.split(/[<>=!~;[\s]/)[0]!);
}

/** Makes sure Python packages are installed with pip (or uninstalled in `clean`). */
export class Pip3 extends Prefab<Pip3Config> {
  readonly name = 'pip3';
  override readonly schema = Pip3Config;

  protected async actions(mode: string): Promise<PrefabAction[]> {
    if (!this.wantsPresent(mode) && mode !== 'clean') return [];
    const pip = this.pipCommand();
    const entries = this.cfg.packages.map((p) => ({ name: distNameOf(p), arg: /\.(whl|tar\.gz|zip|tar\.bz2)$/.test(p) ? this.remotePath(p) : p }));
    const installed = await this.installed(
      pip,
      entries.map((e) => e.name),
    );
    if (this.wantsPresent(mode)) {
      const missing = entries.filter((e) => !installed.has(e.name));
      if (!missing.length) return [];
      return [
        {
          description: `python package${missing.length > 1 ? 's' : ''} not installed: ${missing.map((m) => m.name).join(', ')}`,
          run: async () => {
            const args = [...(this.cfg.user ? ['--user'] : []), ...this.cfg.installArgs, ...missing.map((m) => m.arg)];
            await this.run(`${pip} install -q --disable-pip-version-check ${args.map(quote).join(' ')}`);
            return missing.map((m) => `installed ${m.name}`);
          },
        },
      ];
    }
    const present = entries.filter((e) => installed.has(e.name));
    if (!present.length) return [];
    return [
      {
        description: `python package${present.length > 1 ? 's' : ''} installed: ${present.map((m) => m.name).join(', ')}`,
        run: async () => {
          await this.run(`${pip} uninstall -y -q ${present.map((m) => quote(m.name)).join(' ')}`);
          return present.map((m) => `uninstalled ${m.name}`);
        },
      },
    ];
  }

  private pipCommand(): string {
    // The command is the user's own words (it may be `python3 -m pip`); only `~/` is expanded.
    return this.cfg.pip.replace(/^~\//, `${this.target.home.replace(/\/+$/, '')}/`);
  }

  /** Which of these distributions pip reports as installed (one command). */
  private async installed(pip: string, names: string[]): Promise<Set<string>> {
    const r = await this.look(`${pip} show ${names.map(quote).join(' ')} 2>/dev/null`);
    const set = new Set<string>();
    for (const m of r.stdout.matchAll(/^Name:\s*(\S+)/gm)) set.add(normalizeDistName(m[1]!));
    return set;
  }
}
