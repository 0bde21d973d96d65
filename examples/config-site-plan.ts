/**
 * Configuring a host with a site plan, on the embedded `local` provider: a whiteprint with a
 * schema, a template that uses facts, prefabs, apply twice (the second run changes nothing),
 * validate after a hand-made change, and clean. See docs/configuration.md.
 *
 * Run it with `npx tsx examples/config-site-plan.ts`.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Broker, FileFromString, Folder, LineInFile, SitePlan, Whiteprint, prefab, type PrefabSpec } from 'hostbroker';

const AppConfig = z.object({ dir: z.string(), port: z.number().int(), debug: z.boolean().optional() });

class App extends Whiteprint<z.output<typeof AppConfig>> {
  readonly name = 'app';
  static override defaults = { dir: '~/app', port: 8080 };
  override readonly schema = AppConfig;
  static override tail: readonly PrefabSpec[] = [prefab(LineInFile, { path: '~/.profile', line: 'export APP_HOME="$HOME/app"' })];

  override computeHead(): PrefabSpec[] {
    return [prefab(Folder, { path: this.cfg.dir, mode: '0750' })];
  }

  override async execute(mode: string): Promise<void> {
    if (mode === 'install') {
      await this.uploadTemplateString(
        'port={{ port }}\nworkers={{ target.cpuCount * 2 }}\n{% if debug %}log=debug\n{% endif %}# {{ target.distro }} {{ target.distroVersion }} on {{ target.hostname }}\n',
        `${this.cfg.dir}/app.conf`,
        { mode: '0640' },
      );
    }
  }
}

const plan = new SitePlan([
  { whiteprint: App, config: { port: 9000 } },
  { whiteprint: FileFromString, config: { path: '~/README', content: 'configured by hostbroker\n' }, alias: 'readme' },
]);

const directory = process.env.BROKER_DIRECTORY ?? mkdtempSync(join(tmpdir(), 'hostbroker-config-'));
await using broker = new Broker({ directory });
await using host = await broker.checkout({ provider: 'local' });

console.log((await host.apply(plan, 'install', { App: { debug: true } })).throwIfFailed().toString());
console.log((await host.apply(plan, 'install', { App: { debug: true } })).toString()); // unchanged
console.log((await host.execute('cat ~/app/app.conf')).stdout);

await host.execute('chmod 777 ~/app');
const drift = await host.validate(plan, 'install', { App: { debug: true } });
console.log(drift.toString());
console.log(drift.steps[0]?.drift);

console.log((await host.apply(plan, 'clean')).toString());
