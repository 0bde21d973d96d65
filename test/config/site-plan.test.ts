/**
 * Whiteprints and site plans on a real `local` host (an SSH connection to a per-host server).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  CommandError,
  DriftError,
  Folder,
  LineInFile,
  PartialFailureError,
  SitePlan,
  UserInputError,
  Whiteprint,
  gatherFacts,
  prefab,
  type PrefabSpec,
} from '../../lib/index.js';
import { Session, type RemoteProcess, type SpawnOptions, type Transport } from '../../hosts/session.js';
import type { Host } from '../../hosts/host.js';
import { localHost, type BrokerFixture } from '../helpers/config-host.js';

const GreetingConfig = z.object({ who: z.string(), path: z.string(), punctuation: z.string().default('!') });
class Greeting extends Whiteprint<z.output<typeof GreetingConfig>> {
  readonly name = 'greeting';
  static override defaults = { who: 'world', path: '~/greeting.txt' };
  override readonly schema = GreetingConfig;
  override async execute(mode: string): Promise<void> {
    if (mode === 'install')
      await this.uploadTemplateString(
        'hello {{ who }}{{ punctuation }} ({{ target.user }}@{{ target.hostname }}, {{ target.cpuCount }} cpus)\n',
        this.cfg.path,
      );
    if (mode === 'clean') await this.exec(`rm -f ${this.remotePath(this.cfg.path)}`);
  }
  override async validate(mode: string): Promise<void> {
    if (mode !== 'install') return;
    const text = (await this.downloadBytes(this.cfg.path).catch(() => Buffer.from(''))).toString();
    if (!text.startsWith(`hello ${this.cfg.who}`)) this.drift(`${this.cfg.path} does not greet ${this.cfg.who}`);
  }
}

/** Uses resource files, head/tail prefabs, computed prefabs and a nested whiteprint. */
class App extends Whiteprint<{ dir: string; port: number }> {
  readonly name = 'app';
  static override defaults = { dir: '~/app', port: 8080 };
  static override head: readonly PrefabSpec[] = [prefab(Folder, { path: '~/app-head', mode: '0750' })];
  static override tail: readonly PrefabSpec[] = [prefab(LineInFile, { path: '~/app-log', line: 'app installed' })];
  override computeHead(): PrefabSpec[] {
    return [prefab(Folder, { path: this.cfg.dir })];
  }
  override async execute(mode: string): Promise<void> {
    if (mode === 'install') {
      await this.uploadTemplate('app.conf.j2', `${this.cfg.dir}/app.conf`, { mode: 0o640 });
      await this.uploadFile('static.txt', `${this.cfg.dir}/static.txt`);
      await this.use(mode, Greeting, { who: 'nested', path: `${this.cfg.dir}/nested.txt` });
    }
  }
}

class Failing extends Whiteprint {
  readonly name = 'failing';
  override async execute(): Promise<void> {
    await this.exec('echo some output; echo "the reason it broke" >&2; exit 3');
  }
}

class Recorder extends Whiteprint<{ file: string; word: string }> {
  readonly name = 'recorder';
  static override defaults = { file: '~/order.log', word: 'x' };
  override async execute(mode: string): Promise<void> {
    await this.exec(`echo ${this.cfg.word}-${mode} >> ${this.remotePath(this.cfg.file)}`);
  }
}

let fx: BrokerFixture & { host: Host };
let resources: string;

beforeAll(async () => {
  fx = await localHost();
  resources = await mkdtemp(join(tmpdir(), 'hb-resources-'));
  await mkdir(join(resources, 'app'), { recursive: true });
  await writeFile(
    join(resources, 'app', 'app.conf.j2'),
    'port={{ port }}\ndistro={{ target.distro }} {{ target.distroVersion }}\n{% if debug %}debug=1\n{% endif %}',
  );
  await writeFile(join(resources, 'app', 'static.txt'), 'static {{ not rendered }}\n');
});

afterAll(async () => {
  await fx?.close();
  if (resources) await rm(resources, { recursive: true, force: true });
});

describe('SitePlan on a local host', () => {
  it('renders templates with the config and the facts, and reports changed then unchanged', async () => {
    const plan = new SitePlan([{ whiteprint: Greeting, config: { who: 'ann' } }]);
    const first = await fx.host.apply(plan, 'install');
    expect(first.ok).toBe(true);
    expect(first.steps[0]).toMatchObject({ step: 'greeting', status: 'changed', index: 0 });
    expect(first.steps[0]!.durationMs).toBeGreaterThanOrEqual(0);
    const facts = await gatherFacts(fx.host);
    const text = (await fx.host.session.read(`${facts.home}/greeting.txt`)).toString();
    expect(text).toBe(`hello ann! (${facts.user}@${facts.hostname}, ${facts.cpuCount} cpus)\n`);
    const second = await fx.host.apply(plan, 'install');
    expect(second.steps[0]!.status).toBe('unchanged');
    expect(second.changed).toBe(false);
  });

  it('layers config: defaults < plan defaults < step config < apply-time config (class name, then alias)', async () => {
    const plan = new SitePlan(
      [
        { whiteprint: Greeting, config: { path: '~/g1.txt' }, alias: 'g1' },
        { whiteprint: Greeting, config: { path: '~/g2.txt', who: 'step' }, alias: 'g2' },
        { whiteprint: Greeting, config: { path: '~/g3.txt' }, alias: 'g3' },
      ],
      { defaults: { punctuation: '?', who: 'plan' } },
    );
    const report = await fx.host.apply(plan, 'install', { Greeting: { punctuation: '.' }, g3: { who: 'alias' } });
    expect(report.steps.map((s) => s.step)).toEqual(['g1', 'g2', 'g3']);
    const read = async (f: string): Promise<string> => (await fx.host.execute(`head -c 13 ~/${f}`)).stdout;
    expect(await read('g1.txt')).toBe('hello plan. (');
    expect(await read('g2.txt')).toBe('hello step. (');
    expect(await read('g3.txt')).toBe('hello alias. ');
  });

  it('finds resources in <path>/<whiteprint name>/, runs head, computed and tail prefabs and nested whiteprints', async () => {
    const plan = new SitePlan([{ whiteprint: App, config: { port: 9000 } }], { resourcePaths: [join(resources, 'missing-first'), resources] });
    const report = await fx.host.apply(plan, 'install');
    expect(report.ok, report.toString()).toBe(true);
    const facts = await gatherFacts(fx.host);
    const conf = (await fx.host.execute('cat ~/app/app.conf; stat -c %a ~/app/app.conf ~/app-head; cat ~/app/static.txt ~/app-log ~/app/nested.txt')).stdout;
    expect(conf).toContain(`port=9000\ndistro=${facts.distro} ${facts.distroVersion}\n`);
    expect(conf).not.toContain('debug=1');
    expect(conf).toContain('640\n750\n');
    expect(conf).toContain('static {{ not rendered }}\napp installed\nhello nested!');
    const changes = report.steps[0]!.changes.join('\n');
    expect(changes).toMatch(/folder: created folder .*app-head/);
    expect(changes).toMatch(/line-in-file: added "app installed"/);
    expect((await fx.host.apply(plan, 'install')).steps[0]!.status).toBe('unchanged');
  });

  it('names every place it looked for a missing resource', async () => {
    const plan = new SitePlan([{ whiteprint: App, config: { dir: '~/app2' } }], { resourcePaths: ['/nowhere/a', '/nowhere/b'] });
    const report = await fx.host.apply(plan, 'install');
    expect(report.ok).toBe(false);
    const message = report.steps[0]!.error!.message;
    expect(message).toContain('/nowhere/a/app/app.conf.j2');
    expect(message).toContain('/nowhere/b/app/app.conf.j2');
    expect(report.steps[0]!.error).toBeInstanceOf(UserInputError);
  });

  it('reports a failing command with its output and skips the steps after it', async () => {
    const plan = new SitePlan([{ whiteprint: Failing }, { whiteprint: Greeting, config: { path: '~/never.txt' } }]);
    const report = await fx.host.apply(plan, 'install');
    expect(report.ok).toBe(false);
    expect(report.steps.map((s) => s.status)).toEqual(['failed', 'skipped']);
    const error = report.steps[0]!.error as CommandError;
    expect(error).toBeInstanceOf(CommandError);
    expect(error.status).toBe(3);
    expect(error.stdout).toContain('some output');
    expect(error.message).toContain('the reason it broke');
    expect(error.message).toContain('exit 3');
    expect(() => report.throwIfFailed()).toThrow(CommandError);
    expect((await fx.host.execute('test -e ~/never.txt')).status).not.toBe(0);
  });

  it('rejects config that does not fit the schema, naming the key', async () => {
    const plan = new SitePlan([{ whiteprint: Greeting, alias: 'bad' }]);
    const report = await fx.host.apply(plan, 'install', { bad: { who: 42 as unknown as string } });
    expect(report.steps[0]!.error).toBeInstanceOf(UserInputError);
    expect(report.steps[0]!.error!.message).toMatch(/whiteprint `greeting` \(step 0 \(bad\)\).*who:/);
  });

  it('validate finds drift made by hand and changes nothing', async () => {
    const plan = new SitePlan([
      { whiteprint: Greeting, config: { who: 'val', path: '~/val.txt' } },
      { whiteprint: Folder, config: { path: '~/val-dir', mode: '0700' } },
    ]);
    await fx.host.apply(plan, 'install');
    expect((await fx.host.validate(plan, 'install')).ok).toBe(true);
    await fx.host.execute('echo tampered > ~/val.txt; chmod 755 ~/val-dir');
    const report = await fx.host.validate(plan, 'install');
    expect(report.steps.map((s) => s.status)).toEqual(['failed', 'failed']);
    expect(report.steps[0]!.error).toBeInstanceOf(DriftError);
    expect(report.steps[1]!.drift.join()).toMatch(/mode of .*val-dir 755 → 700/);
    expect(() => report.throwIfFailed()).toThrow(PartialFailureError);
    expect((await fx.host.execute('cat ~/val.txt; stat -c %a ~/val-dir')).stdout).toBe('tampered\n755\n');
  });

  it('runs steps in reverse order in clean mode', async () => {
    await fx.host.execute('rm -f ~/order.log');
    const plan = new SitePlan([
      { whiteprint: Recorder, config: { word: 'a' }, alias: 'a' },
      { whiteprint: Recorder, config: { word: 'b' }, alias: 'b' },
    ]);
    await fx.host.apply(plan, 'install');
    const report = await fx.host.apply(plan, 'clean');
    expect(report.steps.map((s) => s.step)).toEqual(['b', 'a']);
    expect((await fx.host.execute('cat ~/order.log')).stdout).toBe('a-install\nb-install\nb-clean\na-clean\n');
  });

  it('oneOffExec runs a command and throws with its output on failure', async () => {
    const plan = new SitePlan([]);
    expect((await plan.oneOffExec(fx.host, 'echo hi')).stdout).toBe('hi\n');
    await expect(plan.oneOffExec(fx.host, 'echo nope >&2; exit 4')).rejects.toThrow(/nope/);
    expect((await plan.oneOffExec(fx.host, 'exit 4', { errorOk: true })).status).toBe(4);
  });

  it('refuses duplicate aliases and steps without a whiteprint', () => {
    expect(
      () =>
        new SitePlan([
          { whiteprint: Greeting, alias: 'x' },
          { whiteprint: Greeting, alias: 'x' },
        ]),
    ).toThrow(/alias `x`/);
    expect(() => new SitePlan([{ config: {} } as never])).toThrow(/no whiteprint class/);
  });
});

describe('facts', () => {
  it('are gathered in one remote command and cached per host', async () => {
    let spawns = 0;
    const inner = await fx.host.session.connected();
    const counting: Transport = {
      label: 'counting',
      spawn(command: string, options?: SpawnOptions): Promise<RemoteProcess> {
        spawns++;
        return inner.spawn(command, options);
      },
      close: async () => undefined,
    };
    const target = { session: new Session(counting), hostname: 'h.example' };
    const facts = await gatherFacts(target);
    expect(spawns).toBe(1);
    expect(await gatherFacts(target)).toBe(facts);
    expect(spawns).toBe(1);
    const os = (await fx.host.execute('id -un; uname -r; nproc; . /etc/os-release; echo "$ID"; echo "$VERSION_ID"; hostname; echo "$HOME"')).stdout
      .trim()
      .split('\n');
    expect(facts).toMatchObject({
      user: os[0],
      kernel: os[1],
      cpuCount: Number(os[2]),
      distro: os[3],
      distroVersion: os[4],
      hostname: os[5],
      home: os[6],
      host: 'h.example',
    });
    expect(facts.fqdn.length).toBeGreaterThan(0);
    await gatherFacts(target, { refresh: true });
    expect(spawns).toBe(2);
  });
});

describe('types', () => {
  it('types cfg from the schema and step config from the whiteprint', () => {
    expectTypeOf<Greeting['cfg']>().toEqualTypeOf<{ who: string; path: string; punctuation: string }>();
    // A step's config is checked against its own whiteprint.
    new SitePlan([
      { whiteprint: Greeting, config: { who: 'x' } },
      { whiteprint: App, config: { port: 1 } },
    ]);
    // @ts-expect-error who must be a string
    new SitePlan([{ whiteprint: Greeting, config: { who: 1 } }]);
    // @ts-expect-error App has no `who`
    new SitePlan([{ whiteprint: App, config: { who: 'x' } }]);
    expect(true).toBe(true);
  });
});

// Keep the resource helper honest: the static file is uploaded byte for byte.
it('uploadFile copies bytes unchanged', async () => {
  const local = await readFile(join(resources, 'app', 'static.txt'));
  expect(Buffer.compare(await fx.host.session.read(`${(await gatherFacts(fx.host)).home}/app/static.txt`), local)).toBe(0);
});
