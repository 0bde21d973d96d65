/**
 * The prefab suite shared by local and container hosts: every prefab applied twice (the second
 * run reports unchanged and touches nothing on disk), validated, drifted by hand and found,
 * repaired, and undone by `clean`; Apt with a .deb built on the host by dpkg-deb.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Apt,
  FileExistsValidator,
  FileFromPath,
  FileFromString,
  Folder,
  LineInFile,
  SitePlan,
  Symlink,
  Whiteprint,
  prefab,
  type PrefabSpec,
} from '../../lib/index.js';
import type { Host } from '../../hosts/host.js';
import { snapshot } from './config-host.js';

/** Uses FileFromPath as a head prefab: the prefab finds `motd` in this whiteprint's folder. */
class Site extends Whiteprint<{ path: string }> {
  readonly name = 'site';
  static override defaults = { path: '~/pf/motd' };
  override computeHead(): PrefabSpec[] {
    return [prefab(FileFromPath, { source: 'motd', path: this.cfg.path, template: true, mode: '0644' })];
  }
}

export interface PrefabCase {
  title: string;
  plan: (home: string) => SitePlan;
  /** Prepares the area before the first install. */
  before?: string;
  /** Shell test that holds after install. */
  installed: string;
  /** Shell test that holds after clean. */
  cleaned: string;
  /** A hand-made change validate must find. */
  drift: string;
}

export function prefabCases(user: string, group: string): PrefabCase[] {
  return [
    {
      title: 'Folder (owner, group, mode; removed on clean)',
      plan: () => new SitePlan([{ whiteprint: Folder, config: { path: '~/pf/folder/sub', owner: user, group, mode: '0750' } }]),
      installed: `[ "$(stat -c '%a %U %G' ~/pf/folder/sub)" = "750 ${user} ${group}" ]`,
      cleaned: '[ ! -e ~/pf/folder/sub ]',
      drift: 'chmod 777 ~/pf/folder/sub',
    },
    {
      title: 'FileFromString (template with facts and config)',
      plan: () =>
        new SitePlan(
          [{ whiteprint: FileFromString, config: { path: '~/pf/conf', content: 'user={{ target.user }} level={{ level }}\n', template: true, mode: '0600' } }],
          { defaults: { level: 3 } },
        ),
      installed: `[ "$(cat ~/pf/conf)" = "user=${user} level=3" ] && [ "$(stat -c %a ~/pf/conf)" = 600 ]`,
      cleaned: '[ ! -e ~/pf/conf ]',
      drift: 'echo changed by hand > ~/pf/conf',
    },
    {
      title: 'FileFromPath (resource of the whiteprint using it, templated)',
      plan: () => new SitePlan([{ whiteprint: Site }], { resourcePaths: [resourceRoot] }),
      installed: `[ "$(cat ~/pf/motd)" = "welcome to $(hostname)" ]`,
      cleaned: '[ ! -e ~/pf/motd ]',
      drift: 'chmod 600 ~/pf/motd',
    },
    {
      title: 'Symlink',
      before: 'mkdir -p ~/pf && echo target > ~/pf/target-file',
      plan: (home) => new SitePlan([{ whiteprint: Symlink, config: { path: '~/pf/link', target: `${home}/pf/target-file` } }]),
      installed: '[ -L ~/pf/link ] && [ "$(cat ~/pf/link)" = target ]',
      cleaned: '[ ! -L ~/pf/link ] && [ -f ~/pf/target-file ]',
      drift: 'ln -sfn /tmp ~/pf/link',
    },
    {
      title: 'LineInFile (added after a last line without newline; removed on clean)',
      before: "mkdir -p ~/pf && printf 'first\\nlast' > ~/pf/lines",
      plan: () => new SitePlan([{ whiteprint: LineInFile, config: { path: '~/pf/lines', line: 'export A="1 2"' } }]),
      installed: `[ "$(cat ~/pf/lines)" = "$(printf 'first\\nlast\\nexport A="1 2"')" ]`,
      cleaned: `[ "$(cat ~/pf/lines)" = "$(printf 'first\\nlast')" ]`,
      drift: "printf 'first\\nlast\\n' > ~/pf/lines",
    },
  ];
}

let resourceRoot = '';

/** The prefab suite against one kind of host. */
export function describePrefabs(kind: string, getHost: () => Host, cases: () => PrefabCase[], skip: string | false = false): void {
  describe.skipIf(skip)(`prefabs on a ${kind} host`, () => {
    beforeAll(async () => {
      resourceRoot = await mkdtemp(join(tmpdir(), 'hb-prefab-res-'));
      await mkdir(join(resourceRoot, 'site'), { recursive: true });
      await writeFile(join(resourceRoot, 'site', 'motd'), 'welcome to {{ target.hostname }}\n');
    });
    afterAll(async () => {
      if (resourceRoot) await rm(resourceRoot, { recursive: true, force: true });
    });

    // Titles are known before the hosts exist; the cases need the host's user and group.
    ['Folder', 'FileFromString', 'FileFromPath', 'Symlink', 'LineInFile'].forEach((title, i) => {
      it(title, async () => {
        const host = getHost();
        const spec = cases()[i]!;
        const home = (await host.execute('printf %s "$HOME"')).stdout;
        await host.execute('rm -rf ~/pf && mkdir -p ~/pf');
        if (spec.before) expect((await host.execute(spec.before)).status).toBe(0);
        const plan = spec.plan(home);
        const sh = async (test: string): Promise<number> => (await host.execute(test)).status;

        const first = await host.apply(plan, 'install');
        expect(first.ok, first.toString()).toBe(true);
        expect(first.steps[0]!.status).toBe('changed');
        expect(await sh(spec.installed), spec.installed).toBe(0);

        const before = await snapshot(host, '~/pf');
        const second = await host.apply(plan, 'install');
        expect(second.steps[0]!.status, second.steps[0]!.changes.join('; ')).toBe('unchanged');
        expect(await snapshot(host, '~/pf')).toBe(before);

        expect((await host.validate(plan, 'install')).ok).toBe(true);
        expect((await host.execute(spec.drift)).status).toBe(0);
        const drifted = await host.validate(plan, 'install');
        expect(drifted.ok).toBe(false);
        expect(drifted.steps[0]!.drift.length).toBeGreaterThan(0);
        const repaired = await host.apply(plan, 'install');
        expect(repaired.steps[0]!.status).toBe('changed');
        expect(await sh(spec.installed)).toBe(0);
        expect((await host.validate(plan, 'install')).ok).toBe(true);

        expect((await host.validate(plan, 'clean')).ok).toBe(false);
        const clean = await host.apply(plan, 'clean');
        expect(clean.steps[0]!.status, clean.toString()).toBe('changed');
        expect(await sh(spec.cleaned), spec.cleaned).toBe(0);
        expect((await host.apply(plan, 'clean')).steps[0]!.status).toBe('unchanged');
        expect((await host.validate(plan, 'clean')).ok).toBe(true);
      });
    });

    it('FileExistsValidator only validates', async () => {
      const host = getHost();
      await host.execute('rm -rf ~/pf && mkdir -p ~/pf');
      const plan = new SitePlan([{ whiteprint: FileExistsValidator, config: { path: '~/pf/needed', regularFile: true } }]);
      const missing = await host.validate(plan, 'install');
      expect(missing.steps[0]!.drift[0]).toMatch(/pf\/needed does not exist as a regular file/);
      expect((await host.apply(plan, 'install')).steps[0]!.status).toBe('unchanged');
      expect((await host.execute('test -e ~/pf/needed')).status).not.toBe(0);
      await host.execute('touch ~/pf/needed');
      expect((await host.validate(plan, 'install')).ok).toBe(true);
    });
  });
}

/** Apt on a Debian host: a .deb built there with dpkg-deb, installed without network. */
export function describeApt(kind: string, getHost: () => Host, skip: string | false = false): void {
  describe.skipIf(skip)(`Apt on a ${kind} host (a .deb built in the test; no network)`, () => {
    const pkg = `hostbroker-test-${process.pid}`;

    afterAll(async () => {
      // Whatever happened, leave no test package behind on this machine.
      await getHost()?.execute(`dpkg -r ${pkg} >/dev/null 2>&1; true`);
    });

    it('validates against installed packages', async () => {
      const plan = new SitePlan([{ whiteprint: Apt, config: { packages: ['dpkg', 'coreutils'] } }]);
      expect((await getHost().validate(plan, 'install')).ok).toBe(true);
      const absent = new SitePlan([{ whiteprint: Apt, config: { packages: ['dpkg', 'hostbroker-surely-not-a-package'] } }]);
      const report = await getHost().validate(absent, 'install');
      expect(report.steps[0]!.drift).toEqual(['package not installed: hostbroker-surely-not-a-package']);
    });

    it('installs a local .deb once, finds a hand removal, and removes it in clean', async () => {
      const host = getHost();
      const build = await host.execute(
        [
          `mkdir -p ~/deb/DEBIAN ~/deb/usr/share/${pkg}`,
          `printf 'Package: ${pkg}\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: hostbroker tests <tests@localhost>\\nDescription: hostbroker test package\\n' > ~/deb/DEBIAN/control`,
          `echo marker > ~/deb/usr/share/${pkg}/marker`,
          `dpkg-deb --build ~/deb ~/${pkg}.deb >/dev/null`,
        ].join(' && '),
      );
      expect(build.status, build.stderr).toBe(0);
      const plan = new SitePlan([{ whiteprint: Apt, config: { packages: [`~/${pkg}.deb`] } }]);
      const status = async (): Promise<string> =>
        (await host.execute(`dpkg-query -W -f='\${Status}' ${pkg} 2>/dev/null; stat -c ' %i %Y' /usr/share/${pkg}/marker 2>/dev/null`)).stdout.trim();

      const first = await host.apply(plan, 'install');
      expect(first.ok, first.toString()).toBe(true);
      expect(first.steps[0]!.changes).toEqual([`installed ${pkg}`]);
      const installed = await status();
      expect(installed).toMatch(/^install ok installed \d+ \d+$/);
      expect((await host.apply(plan, 'install')).steps[0]!.status).toBe('unchanged');
      expect(await status()).toBe(installed);
      expect((await host.validate(plan, 'install')).ok).toBe(true);

      await host.execute(`dpkg -r ${pkg}`);
      const drift = await host.validate(plan, 'install');
      expect(drift.steps[0]!.drift).toEqual([`package not installed: ${pkg}`]);
      expect((await host.apply(plan, 'install')).steps[0]!.status).toBe('changed');

      const clean = await host.apply(plan, 'clean');
      expect(clean.steps[0]!.changes).toEqual([`removed ${pkg}`]);
      expect(await status()).not.toMatch(/install ok installed/);
      expect((await host.apply(plan, 'clean')).steps[0]!.status).toBe('unchanged');
      expect((await host.validate(plan, 'clean')).ok).toBe(true);
    }, 240_000);
  });
}
