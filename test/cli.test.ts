/**
 * The `hostbroker` CLI end to end: each command run from source in its own process, against the
 * `local` provider in a temporary BROKER_DIRECTORY, including `--output-file`, `--json`, exit
 * codes and bad input.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { type CliInput, NODE_ARGS, type Ran, runCli, startCli as start } from './helpers/cli-process.js';
import { Inventory } from '../lib/inventory/index.js';
import { localFolders, localServers } from './reliability/util.js';

let dir: string;

/** Starts the CLI in this test's broker directory; `output` is what it printed so far, `done` its end. */
const startCli = (args: string[], options: CliInput = {}) => start(dir, args, options);
const cli = (args: string[], options: CliInput = {}): Promise<Ran> => runCli(dir, args, options);

/** Resolves once `check` is true, looking every 10 ms. */
async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 10));
}

/** The inventory's host records, read straight from the file (none before it exists). */
async function inventoryHosts(): Promise<Rec[]> {
  const text = await readFile(join(dir, 'inventory.json'), 'utf8').catch(() => '{"hosts":[]}');
  return (JSON.parse(text) as { hosts: Rec[] }).hosts;
}

async function json<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

type Rec = { id: string; name: string; provider: string; state: string; recipe: { args: Record<string, unknown> } };

// Every command is a fresh Node process compiling TypeScript: generous limits on a loaded machine.
describe('hostbroker CLI', { timeout: 400_000 }, () => {
  // Each test gets its own broker directory, so one failure cannot spill into the next.
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-cli-'));
    // A static machine that nothing listens on: enough for `execute` and `providers --live`.
    await writeFile(
      join(dir, 'broker_settings.yaml'),
      stringify({ static: { hosts: [{ name: 'lab1', hostname: '127.0.0.1', port: 1, username: 'nobody', groups: ['lab'] }] } }),
    );
  });
  afterEach(async () => {
    await cli(['checkin', '--all']);
    await rm(dir, { recursive: true, force: true });
  });

  it('prints its version and lists providers with their options from the zod schemas', async () => {
    const v = await cli(['--version']);
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
    expect(v).toMatchObject({ status: 0, stdout: `${pkg.version}\n` });
    const list = await cli(['providers']);
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/^local\s+A fresh home directory/m);
    expect(list.stdout).toMatch(/^static\s+Existing machines/m);
    const one = await cli(['providers', 'local']);
    expect(one.stdout).toMatch(/--name\s+string/);
    expect(one.stdout).toMatch(/--files\s+object/);
    const live = await cli(['providers', 'static', '--live', '--json']);
    expect(live.status).toBe(0);
    expect((JSON.parse(live.stdout) as { live: { machines: Array<{ name: string }> } }).live.machines.map((m) => m.name)).toEqual(['lab1']);
  });

  it('checks out, lists, runs commands over ssh, duplicates, and checks in', async () => {
    const out = join(dir, 'checkout.json');
    const co = await cli(['checkout', '--provider', 'local', '--name', 'web', '--count', '2', '--files', '{"motd.txt":"hello"}', '--output-file', out]);
    expect(co.status).toBe(0);
    expect(co.stderr).not.toMatch(/checkout \d\/2|\r/); // no progress line without a terminal
    expect(co.stdout).toMatch(/^NAME\s+ADDRESS/);
    const made = await json<Rec[]>(out);
    expect(made.map((r) => [r.name, r.provider, r.state])).toEqual([
      ['web-0', 'local', 'ready'],
      ['web-1', 'local', 'ready'],
    ]);
    // --files was parsed as JSON because the schema says object.
    expect(made[0]!.recipe.args.files).toEqual({ 'motd.txt': 'hello' });

    const inv = await cli(['inventory']);
    expect(inv.stdout).toMatch(/^#\s+NAME/);
    expect(inv.stdout).toMatch(/^0\s+web-0\s+root@127\.0\.0\.1:\d+\s+local\s+ready/m);
    const details = parseYaml((await cli(['inventory', '--details', '--filter', 'name=web-1'])).stdout) as Rec[];
    expect(details.map((r) => r.id)).toEqual([made[1]!.id]);
    const filtered = JSON.parse((await cli(['inventory', '--json', '--filter', 'name}-0'])).stdout) as Rec[];
    expect(filtered.map((r) => r.name)).toEqual(['web-0']);

    const ssh = await cli(['ssh', 'web-0', 'cat motd.txt; echo; exit 3']);
    expect(ssh).toMatchObject({ status: 3, stdout: 'hello\n' });
    const byIndex = await cli(['ssh', '1', 'echo', 'from', '$((6*7))']);
    expect(byIndex).toMatchObject({ status: 0, stdout: 'from 42\n' });
    const shell = await cli(['ssh', 'web-0'], { input: 'echo in-shell-$((1+1))\nexit 4\n' });
    expect(shell.stdout).toContain('in-shell-2');
    expect(shell.status).toBe(4);

    const dupOut = join(dir, 'dup.json');
    const dup = await cli(['duplicate', 'web-0', '--output-file', dupOut]);
    expect(dup.status).toBe(0);
    const copies = await json<Rec[]>(dupOut);
    expect(copies).toHaveLength(1);
    expect(copies[0]!.recipe.args.files).toEqual({ 'motd.txt': 'hello' });

    const ext = await cli(['extend', 'web-0', '--lease', '1h', '--json']);
    expect(ext.status).toBe(0);
    const lease = Date.parse((JSON.parse(ext.stdout) as Array<{ leaseExpires: string }>)[0]!.leaseExpires) - Date.now();
    expect(lease).toBeGreaterThan(50 * 60_000);
    expect(lease).toBeLessThanOrEqual(60 * 60_000);
    const noLease = await cli(['extend', 'web-1']);
    expect(noLease.status).toBe(2);
    expect(noLease.stderr).toMatch(/say how long to extend web-1/);

    const ci = await cli(['checkin', 'web-0', copies[0]!.id, '--output-file', join(dir, 'ci.json')]);
    expect(ci).toMatchObject({ status: 0 });
    expect((await json<Array<{ name: string }>>(join(dir, 'ci.json'))).map((r) => r.name).sort()).toEqual([copies[0]!.name, 'web-0'].sort());
    const rest = await cli(['checkin', '--filter', 'name<web']);
    expect(rest.stdout).toBe('checked in 1 host(s): web-1\n');
    expect(JSON.parse((await cli(['inventory', '--json'])).stdout)).toEqual([]);
  });

  it('brings a topology up, writes its outputs, and destroys it from another process', async () => {
    const meta = join(dir, 'ipa.yaml');
    await writeFile(
      meta,
      stringify({
        provider: 'local',
        domains: [
          {
            name: 'test.example',
            hosts: [
              { name: 'master', role: 'master', group: 'ipaserver', os: 'fedora-40' },
              { name: 'replica', role: 'replica', group: 'ipaserver' },
            ],
          },
        ],
      }),
    );
    const files = { inv: join(dir, 'out', 'inventory.yaml'), ssh: join(dir, 'out', 'ssh_config'), json: join(dir, 'out', 'deployment.json') };
    const upped = await cli([
      'up',
      meta,
      '--ansible-inventory',
      files.inv,
      '--ssh-config',
      files.ssh,
      '--json',
      files.json,
      '--output-file',
      join(dir, 'up.json'),
    ]);
    expect(upped.status).toBe(0);
    expect(upped.stderr).not.toMatch(/up \d\/2|\r/);
    expect(upped.stdout).toMatch(/^deployment ipa \(dep-[0-9a-f]+\)/);
    const inv = parseYaml(await readFile(files.inv, 'utf8')) as {
      all: { children: { ipaserver: { hosts: Record<string, unknown> } }; hosts: Record<string, Record<string, unknown>> };
    };
    expect(Object.keys(inv.all.children.ipaserver.hosts)).toEqual(['master.test.example', 'replica.test.example']);
    expect(inv.all.hosts['master.test.example']).toMatchObject({ meta_os: 'fedora-40', meta_role: 'master', ansible_user: 'root' });
    expect(await readFile(files.ssh, 'utf8')).toMatch(/^Host master\.test\.example master\n {2}HostName 127\.0\.0\.1\n {2}Port \d+/m);
    const dep = await json<{ id: string; hosts: Array<{ fqdn: string }> }>(files.json);
    expect(dep.hosts.map((h) => h.fqdn)).toEqual(['master.test.example', 'replica.test.example']);
    expect((await json<{ id: string }>(join(dir, 'up.json'))).id).toBe(dep.id);

    expect((await cli(['deployments'])).stdout).toMatch(new RegExp(`^ipa\\s+${dep.id}\\s+2\\s+2`, 'm'));
    expect((await cli(['ssh', 'replica', 'hostname >/dev/null && echo ok'])).stdout).toBe('ok\n');
    const printed = await cli(['output', 'ipa']);
    expect(parseYaml(printed.stdout)).toEqual(inv);
    const again = join(dir, 'out', 'again.json');
    expect((await cli(['output', dep.id, '--json', again])).status).toBe(0);
    expect((await json<{ hosts: unknown[] }>(again)).hosts).toHaveLength(2);

    const destroyed = await cli(['destroy', 'ipa', '--output-file', join(dir, 'destroy.json')]);
    expect(destroyed).toMatchObject({ status: 0, stdout: `destroyed deployment ipa (${dep.id}): 2 host(s)\n` });
    expect(await json(join(dir, 'destroy.json'))).toEqual({ id: dep.id, name: 'ipa', destroyed: ['master.test.example', 'replica.test.example'] });
    expect(JSON.parse((await cli(['inventory', '--json'])).stdout)).toEqual([]);
    const gone = await cli(['destroy', 'ipa']);
    expect(gone.status).toBe(2);
    expect(gone.stderr).toMatch(/no deployment `ipa`/);
  });

  it('runs provider actions, syncs and reaps', async () => {
    const ex = await cli(['execute', '--provider', 'static', '--action', 'machines', '--group', 'lab', '--json']);
    expect(ex.status).toBe(0);
    expect((JSON.parse(ex.stdout) as Array<{ name: string; heldBy: unknown }>).map((m) => [m.name, m.heldBy])).toEqual([['lab1', null]]);
    const noAction = await cli(['execute', '--provider', 'local', '--action', 'nope']);
    expect(noAction.status).toBe(2);
    expect(noAction.stderr).toMatch(/provider `local` has no action `nope`; it has no actions/);
    const badArg = await cli(['execute', '--provider', 'static', '--action', 'machines', '--colour', 'red']);
    expect(badArg.status).toBe(2);
    expect(badArg.stderr).toMatch(/unknown option --colour for action `machines` of provider `static`; accepted: --group/);

    const co = JSON.parse((await cli(['checkout', '--provider', 'local', '--name', 'synced', '--json'])).stdout) as Rec[];
    const sync = await cli(['inventory', '--sync', 'local', '--json']);
    expect(sync.status).toBe(0);
    expect((JSON.parse(sync.stdout) as Rec[]).map((r) => r.id)).toEqual([co[0]!.id]);
    const reap = await cli(['reap', '--output-file', join(dir, 'reap.json')]);
    expect(reap.status).toBe(0);
    expect(await json(join(dir, 'reap.json'))).toEqual({ released: [], removed: [] });
    expect((await cli(['checkin', 'synced'])).status).toBe(0);
  });

  it('rejects bad input with a message that says which and why, and a non-zero exit', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['checkout', '--provider', 'local', '--colour', 'red'], 2, /unknown option --colour for provider `local`; accepted: --name, --files/],
      [['checkout', '--provider', 'local', '--count', 'many'], 2, /'--count <n>' argument 'many' is invalid\. expected a whole number of at least 1/],
      [['checkout', '--provider', 'nosuch'], 2, /unknown provider `nosuch`; known providers: local/],
      [['checkout', '--provider', 'local', '--name', 'bad name!'], 2, /invalid checkout arguments for provider `local`: name: use letters, digits/],
      [['checkout', '--nick', 'rhel9'], 2, /there is no nick `rhel9`/],
      [['checkout'], 2, /checkout needs --provider <name> or --nick <nick>/],
      [['checkout', '--provider', 'local', '--lease', 'soon'], 2, /'--lease <duration>' argument 'soon' is invalid/],
      [['checkin'], 2, /say which hosts to check in/],
      [['checkin', 'ghost'], 2, /no host `ghost` in the inventory/],
      [['inventory', '--filter', 'name'], 2, /filter/i],
      [['frobnicate'], 2, /unknown command 'frobnicate'/],
      [['inventory', '--bogus'], 2, /unknown option '--bogus'/],
      [['--log-level', 'loud', 'inventory'], 2, /'loud' is invalid\. Allowed choices are silent, error, warn, info, debug, trace/],
      [['up', join(dir, 'missing.yaml')], 2, /cannot read the metadata file .*missing\.yaml/],
      [['destroy'], 2, /say which deployment: there is none/],
    ];
    // None of these changes anything, so they run side by side.
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    cases.forEach(([args, status, message], i) => {
      const r = results[i]!;
      expect({ args, status: r.status, stdout: r.stdout }).toEqual({ args, status, stdout: '' });
      expect(r.stderr, args.join(' ')).toMatch(message);
    });
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'provider: local\ndomains:\n  - name: x.test\n    hosts:\n      - name: a\n        colour: red\n');
    const out = join(dir, 'bad.json');
    const r = await cli(['up', bad, '--output-file', out]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/hosts\[0\] \(a\)\.colour: unknown host key `colour`/);
    expect(await json(out)).toMatchObject({ error: { name: 'UserInputError', code: 'USER_INPUT', message: expect.stringContaining('colour') } });
    // A broken settings file is a settings error (its own exit code).
    const broken = await mkdtemp(join(tmpdir(), 'hb-cli-bad-'));
    await writeFile(join(broken, 'broker_settings.yaml'), 'nicks: [1, 2\n');
    const s = await cli(['inventory'], { env: { BROKER_DIRECTORY: broken } });
    expect(s.status).toBe(3);
    expect(s.stderr).toMatch(/broker_settings\.yaml is not valid YAML/);
    await rm(broken, { recursive: true, force: true });
  });

  it('draws progress and wires the shell to a terminal when there is one', async () => {
    // `script` runs the CLI on a pseudo-terminal, as a person at a terminal would.
    const onTty = (command: string, input = ''): Promise<Ran> =>
      new Promise((done, fail) => {
        const child = spawn('script', ['-qec', command, '/dev/null'], {
          env: { ...process.env, BROKER_DIRECTORY: dir, CI: '' },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        child.stdout.on('data', (d: Buffer) => (stdout += String(d)));
        child.on('error', fail);
        child.on('close', (status) => done({ status, stdout, stderr: '' }));
        // Type only once the shell is up, as a person would.
        setTimeout(() => child.stdin.end(input), input ? 8000 : 0);
      });
    const cliCmd = [process.execPath, ...NODE_ARGS].join(' ');
    const co = await onTty(`${cliCmd} checkout --provider local --name tty --count 2`);
    expect(co.status).toBe(0);
    expect(co.stdout).toContain('\r\x1b[2Kcheckout 1/2 · tty-');
    expect(co.stdout).toContain('\r\x1b[2Kcheckout 2/2 · tty-');
    const sh = await onTty(`${cliCmd} ssh tty-0`, 'echo in-tty-$((2+3)); exit 7\n');
    expect(sh.stdout).toContain('in-tty-5');
    expect(sh.status).toBe(7);
    expect((await cli(['checkin', '--filter', 'name{tty-'])).stdout).toMatch(/^checked in 2 host\(s\)/);
  });

  it('SIGINT during a multi-host checkout releases what was made, says so, and exits 130', async () => {
    // A bundle that sleeps keeps the checkout running until it is interrupted.
    await writeFile(join(dir, 'broker_settings.yaml'), stringify({ bundles: { slow: { scripts: [{ run: 'sleep 45' }] } } }));
    const run = startCli(['checkout', '--provider', 'local', '--name', 'int', '--count', '3', '--bundle', 'slow']);
    // All three hosts made (their folders exist) and sleeping in the bundle: a signal that came
    // between the intent records and the provider calls would rightly say "3 never started".
    await until(async () => (await localFolders(dir)).length === 3 && (await inventoryHosts()).every((h) => h.state === 'ready'));
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.status).toBe(130);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^hostbroker: SIGINT: stopping and releasing the hosts made so far/m);
    expect(r.stderr).toMatch(
      /^hostbroker: checkout of 3 host\(s\) from local was aborted \(interrupted by SIGINT\): released 3 \(int-\d, int-\d, int-\d\)\.$/m,
    );
    expect(await inventoryHosts()).toEqual([]);
    expect(await localFolders(dir)).toEqual([]);
    expect(await localServers(dir)).toEqual([]);
  });

  it('a second SIGINT exits at once and leaves the records for reap and checkin', async () => {
    await writeFile(join(dir, 'broker_settings.yaml'), stringify({ bundles: { slow: { scripts: [{ run: 'sleep 45' }] } } }));
    const run = startCli(['checkout', '--provider', 'local', '--name', 'twice', '--count', '3', '--bundle', 'slow']);
    await until(async () => (await inventoryHosts()).length === 3);
    // Hold the inventory lock: the CLI's cleanup after the first SIGINT waits for it, so the
    // second SIGINT surely comes in the middle of that cleanup.
    const lock = await holdInventoryLock(dir);
    run.child.kill('SIGINT');
    await until(() => run.output.stderr.includes('SIGINT: stopping'));
    run.child.kill('SIGINT');
    const r = await run.done;
    await lock.release();
    expect(r.status).toBe(130);
    expect(r.stderr).toMatch(/^hostbroker: SIGINT again: exiting now\. .*hostbroker reap/m);
    expect(r.stderr).not.toMatch(/was aborted/);
    // The inventory is whole and still names every host, made or not.
    const left = JSON.parse((await cli(['inventory', '--json'])).stdout) as Rec[];
    expect(left.map((h) => h.name).sort()).toEqual(['twice-0', 'twice-1', 'twice-2']);
    // Records of checkouts that never finished (their process is gone) are reaped; the rest checked in.
    expect((await cli(['reap'])).status).toBe(0);
    expect((await cli(['checkin', '--all'])).status).toBe(0);
    expect(await inventoryHosts()).toEqual([]);
    expect(await localFolders(dir)).toEqual([]);
    expect(await localServers(dir)).toEqual([]);
  });

  /**
   * Checks out three local hosts and makes the release of the middle one wait: its server.pid
   * becomes a FIFO, which the local provider's release reads (blocking) before it stops anything.
   * `unblock()` writes the pid into the FIFO. (A FIFO left blocked would also block the CLI's
   * exit: Node waits for its file-system threads.)
   */
  async function threeHostsOneStuck(name: string): Promise<{ ids: string[]; unblock: () => Promise<void> }> {
    const co = await cli(['checkout', '--provider', 'local', '--name', name, '--count', '3', '--json']);
    expect(co.status).toBe(0);
    const ids = (JSON.parse(co.stdout) as Rec[]).map((r) => r.id);
    const pidFile = join(dir, 'local-hosts', ids[1]!, 'server.pid');
    const pid = await readFile(pidFile, 'utf8');
    await rm(pidFile);
    await promisify(execFile)('mkfifo', [pidFile]);
    return { ids, unblock: () => writeFile(pidFile, pid) };
  }

  it('SIGINT during checkin --all finishes the release under way, starts no more, says what is left, and exits 130', async () => {
    const { ids, unblock } = await threeHostsOneStuck('ci');
    // One at a time: ci-0 is released, ci-1's release waits on the FIFO, ci-2 waits for a slot.
    const run = startCli(['checkin', '--all', '--concurrency', '1']);
    await until(async () => {
      const hosts = await inventoryHosts();
      return hosts.length === 2 && hosts[0]!.name === 'ci-1' && hosts[0]!.state === 'releasing';
    });
    run.child.kill('SIGINT');
    await until(() => run.output.stderr.includes('SIGINT: finishing'));
    await unblock();
    const r = await run.done;
    expect(r.status).toBe(130);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^hostbroker: SIGINT: finishing the 1 release\(s\) under way \(ci-1\); not starting the other 1 \(Ctrl-C again to exit at once; hosts not checked in stay in the inventory\)$/m,
    );
    expect(r.stderr).toMatch(
      new RegExp(
        `^hostbroker: interrupted by SIGINT: checked in 2 of 3 host\\(s\\) \\(ci-0, ci-1\\); 1 still in the inventory \\(ci-2\\); finish with \`hostbroker checkin ${ids[2]}\`\\.$`,
        'm',
      ),
    );
    expect((await inventoryHosts()).map((h) => [h.name, h.state])).toEqual([['ci-2', 'ready']]);
    const rest = await cli(['checkin', '--all']);
    expect(rest).toMatchObject({ status: 0, stdout: 'checked in 1 host(s): ci-2\n' });
    expect(await inventoryHosts()).toEqual([]);
    expect(await localFolders(dir)).toEqual([]);
    expect(await localServers(dir)).toEqual([]);
  });

  it('a second SIGINT during checkin exits at once; the interrupted release stays as releasing and a later checkin finishes it', async () => {
    const { ids, unblock } = await threeHostsOneStuck('ci2');
    const run = startCli(['checkin', '--all', '--concurrency', '1']);
    await until(async () => (await inventoryHosts()).some((h) => h.name === 'ci2-1' && h.state === 'releasing'));
    // Hold the inventory lock, then let ci2-1's release go on: it stops the server and removes
    // the folder, then waits for the lock to forget the record, so the second SIGINT surely
    // comes while that release is under way.
    const lock = await holdInventoryLock(dir);
    run.child.kill('SIGINT');
    await until(() => run.output.stderr.includes('SIGINT: finishing'));
    await unblock();
    await until(async () => !(await localFolders(dir)).includes(ids[1]!));
    run.child.kill('SIGINT');
    const r = await run.done;
    await lock.release();
    expect(r.status).toBe(130);
    const finish = `hostbroker checkin ${ids[1]} ${ids[2]}`;
    expect(r.stderr).toContain(
      `hostbroker: SIGINT again: exiting now. Not checked in: ci2-1 (releasing), ci2-2; they stay in the inventory. Finish with \`${finish}\`.`,
    );
    expect(r.stderr).not.toMatch(/interrupted by SIGINT: checked in/);
    // The record of the release that was cut off is still there, in state releasing.
    expect((await inventoryHosts()).map((h) => [h.name, h.state])).toEqual([
      ['ci2-1', 'releasing'],
      ['ci2-2', 'ready'],
    ]);
    expect(await localServers(dir)).toHaveLength(1);
    const again = await cli(finish.split(' ').slice(1));
    expect(again).toMatchObject({ status: 0, stdout: 'checked in 2 host(s): ci2-1, ci2-2\n' });
    expect(await inventoryHosts()).toEqual([]);
    expect(await localFolders(dir)).toEqual([]);
    expect(await localServers(dir)).toEqual([]);
  });

  it('keeps secrets out of what it prints and writes', async () => {
    const secretDir = await mkdtemp(join(tmpdir(), 'hb-cli-secret-'));
    const password = 'hunter2-very-secret';
    await writeFile(join(secretDir, '.env'), `LAB_PASSWORD=${password}\n`);
    await writeFile(
      join(secretDir, 'broker_settings.yaml'),
      stringify({ static: { hosts: [{ name: 'lab1', hostname: '127.0.0.1', port: 1, username: 'u', passwordEnv: 'LAB_PASSWORD' }] } }),
    );
    const out = join(secretDir, 'out.json');
    const co = await cli(['checkout', '--provider', 'static', '--name', 'lab1', '--output-file', out, '--timeout', '5s'], {
      env: { BROKER_DIRECTORY: secretDir },
    });
    for (const text of [co.stdout, co.stderr, await readFile(out, 'utf8'), await readFile(join(secretDir, 'inventory.json'), 'utf8').catch(() => '')])
      expect(text).not.toContain(password);
    await cli(['checkin', '--all'], { env: { BROKER_DIRECTORY: secretDir } });
    await rm(secretDir, { recursive: true, force: true });
  });
});

/** Takes the inventory lock in this process and holds it until `release()`. */
async function holdInventoryLock(directory: string): Promise<{ release(): Promise<void> }> {
  let open = (): void => undefined;
  const gate = new Promise<void>((r) => (open = r));
  let held = (): void => undefined;
  const locked = new Promise<void>((r) => (held = r));
  const holding = new Inventory(directory).update(async () => {
    held();
    await gate;
  });
  await locked;
  return {
    async release() {
      open();
      await holding;
    },
  };
}
