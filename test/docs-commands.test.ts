/**
 * Every `hostbroker` command in the fenced `sh` blocks of README.md and docs/ runs as written and
 * exits 0, so docs and CLI cannot drift. Each page gets a fresh broker directory holding what its
 * examples assume (settings, `args.yaml`, `results.xml`, `metadata.yaml`, `provisioning.yaml`),
 * and its commands run in page order through `/bin/sh`, as a reader pastes them. Before a block
 * that names them, the `local` hosts of the examples (`web-0`, `web-1`, `web-2`) are there. Commands that need
 * something outside this machine are listed in {@link NEEDS_OUTSIDE}, each with the reason.
 */
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { NODE_ARGS } from './helpers/cli-process.js';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.js';

/** Documented commands (without trailing comments) that cannot run here, and why. Each must still appear in the docs. */
const NEEDS_OUTSIDE: Record<string, string> = {
  'hostbroker checkout --provider ec2 --image ami-0abc --instance-type t3.small --lease 4h': 'an AWS account',
  'hostbroker inventory --sync ec2::us-east': 'an AWS account (and an ec2 instance `us-east` in settings)',
  'hostbroker reap ec2': 'an AWS account',
  'hostbroker providers tower --live workflows': 'an Ansible Tower / AWX service',
};

/** The `local` hosts the examples refer to by name (and by `#` index). */
const FLEET = ['web-0', 'web-1', 'web-2'];

/** A generous limit per command (a checkout of three hosts on a loaded machine takes seconds). */
const COMMAND_LIMIT_MS = 120_000;

interface Block {
  file: string;
  line: number;
  commands: string[];
}

/** The `hostbroker` commands of each fenced sh block, continuation lines joined. */
function blocksOf(file: string, text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*```(sh|bash|shell)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i + 1;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```/.test(lines[i]!); i++) body.push(lines[i]!);
    const commands: string[] = [];
    for (let j = 0; j < body.length; j++) {
      let command = body[j]!;
      while (command.endsWith('\\') && j + 1 < body.length) command = `${command.slice(0, -1)}${body[++j]!.trimStart()}`;
      if (/^hostbroker(\s|$)/.test(command.trim())) commands.push(command.trim());
    }
    if (commands.length) blocks.push({ file, line: start, commands });
  }
  return blocks;
}

/** Whether a command names a fleet host, or a host by its `#` index (`hostbroker ssh 2 ...`). */
function namesFleet(command: string): boolean {
  return FLEET.some((name) => command.includes(name)) || /^hostbroker \w+ \d+(\s|$)/.test(command);
}

/** A command without its trailing `# comment` (only for looking it up in {@link NEEDS_OUTSIDE}). */
function uncommented(command: string): string {
  return command.replace(/\s+#\s.*$/, '');
}

async function markdownFiles(): Promise<string[]> {
  const out = ['README.md'];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory() && e.name !== 'api') await walk(path);
      else if (e.name.endsWith('.md')) out.push(path);
    }
  };
  await walk('docs');
  return out.sort();
}

const files = await markdownFiles();
const blocks = (await Promise.all(files.map(async (f) => blocksOf(f, await readFile(f, 'utf8'))))).flat();
const byFile = [...new Set(blocks.map((b) => b.file))].map((file) => ({ file, blocks: blocks.filter((b) => b.file === file) }));

interface Ran {
  status: number | null;
  output: string;
}

describe.skipIf(!sshdAvailable())('the hostbroker commands in the docs run as written', { timeout: 900_000 }, () => {
  let root: string;
  let bin: string;
  let sshd: Sshd;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'hb-docs-'));
    bin = join(root, 'bin');
    await mkdir(bin);
    // `hostbroker` on PATH, as after `npm install -g hostbroker`.
    const quoted = [process.execPath, ...NODE_ARGS].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    await writeFile(join(bin, 'hostbroker'), `#!/bin/sh\nexec ${quoted} "$@"\n`);
    await chmod(join(bin, 'hostbroker'), 0o755);
    // The static machine of the examples (group lab, arch arm64) is a real sshd on this machine.
    sshd = await startSshd();
  });
  afterAll(async () => {
    for (const e of await readdir(root).catch(() => [] as string[])) {
      if (e.startsWith('broker-')) await run(join(root, e), 'hostbroker checkin --all').catch(() => undefined);
    }
    await sshd?.stop();
    await rm(root, { recursive: true, force: true });
  });

  function run(directory: string, command: string): Promise<Ran> {
    return new Promise((done, fail) => {
      const child = spawn('/bin/sh', ['-c', command], {
        cwd: directory,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, BROKER_DIRECTORY: directory, CI: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += String(d)));
      child.stderr.on('data', (d: Buffer) => (output += String(d)));
      const timer = setTimeout(() => {
        output += `\n[killed after ${COMMAND_LIMIT_MS} ms]`;
        child.kill('SIGKILL');
      }, COMMAND_LIMIT_MS);
      child.on('error', fail);
      child.on('close', (status) => {
        clearTimeout(timer);
        done({ status, output });
      });
    });
  }

  /** A broker directory with what the examples assume is there. */
  async function brokerDirectory(file: string): Promise<string> {
    const directory = await mkdtemp(join(root, 'broker-'));
    const settings = {
      static: {
        hosts: [
          {
            name: 'lab1',
            hostname: sshd.host,
            port: sshd.port,
            username: sshd.username,
            privateKeyPath: sshd.privateKeyPath,
            groups: ['lab'],
            labels: { arch: 'arm64' },
          },
        ],
      },
      // The examples' nick, here on the local provider.
      nicks: { rhel9: { provider: 'local', name: 'rhel9' } },
      // `extend --all` without --lease extends by this.
      checkout: { lease: '4h' },
    };
    await writeFile(join(directory, 'broker_settings.yaml'), stringify(settings));
    await writeFile(join(directory, 'args.yaml'), stringify({ files: { 'motd.txt': `from ${file}\n` } }));
    await writeFile(join(directory, 'results.xml'), '<testsuite name="docs" tests="1" failures="0" errors="0"><testcase name="ok"/></testsuite>\n');
    // The page's IPA example as the repository ships it, on the local provider.
    await copyFile('examples/topology.yaml', join(directory, 'metadata.yaml'));
    await writeFile(join(directory, 'provisioning.yaml'), stringify({ default_provider: 'local', strategy: 'abort' }));
    // The example scenarios, by name (`hostbroker scenario run hello-local`), and the topology one of them brings up.
    await mkdir(join(directory, 'scenarios'));
    for (const f of await readdir('examples/scenarios')) await copyFile(join('examples/scenarios', f), join(directory, 'scenarios', f));
    await copyFile('examples/topology.yaml', join(directory, 'topology.yaml'));
    return directory;
  }

  /** Checks out the fleet hosts that are not in the inventory (an earlier block may have checked them in). */
  async function topUp(directory: string): Promise<void> {
    const listed = await run(directory, 'hostbroker inventory --json');
    expect(listed.status, listed.output).toBe(0);
    const names = new Set((JSON.parse(listed.output) as Array<{ name: string }>).map((r) => r.name));
    for (const name of FLEET.filter((n) => !names.has(n))) {
      const made = await run(directory, `hostbroker checkout --provider local --name ${name}`);
      expect(made.status, made.output).toBe(0);
    }
  }

  it('finds the documented commands, and every one listed as needing the outside world is still documented', () => {
    const all = blocks.flatMap((b) => b.commands.map(uncommented));
    expect(all.length).toBeGreaterThan(30);
    expect(Object.keys(NEEDS_OUTSIDE).filter((c) => !all.includes(c))).toEqual([]);
  });

  it.each(byFile.map(({ file, blocks }) => ({ file: relative('.', file), blocks })))('$file', async ({ file, blocks }) => {
    const directory = await brokerDirectory(file);
    const failed: string[] = [];
    for (const block of blocks) {
      if (block.commands.some(namesFleet)) await topUp(directory);
      for (const command of block.commands) {
        if (NEEDS_OUTSIDE[uncommented(command)]) continue;
        const r = await run(directory, command);
        if (r.status !== 0) failed.push(`${file}:${block.line}: \`${command}\` exited ${r.status}:\n${r.output.trim()}`);
      }
    }
    expect(failed).toEqual([]);
  });
});
