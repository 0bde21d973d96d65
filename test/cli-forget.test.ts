/**
 * `hostbroker forget`: drops records without asking their providers (a host removed by hand, a
 * provider whose SDK is gone), asks on a terminal, refuses without `--yes` elsewhere, and says
 * what it dropped. Run as a process, from source (or the build under `npm test`).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileInventoryStore } from '../lib/inventory/index.js';
import { sampleRecord } from '../lib/testing/store-suite.js';
import { NODE_ARGS, type Ran } from './helpers/cli-process.js';

let dir: string;

function run(command: string, args: string[], input: string): Promise<Ran> {
  const child = spawn(command, args, { env: { ...process.env, BROKER_DIRECTORY: dir, CI: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Ran = { status: null, stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += String(d)));
  child.stderr.on('data', (d: Buffer) => (out.stderr += String(d)));
  child.stdin.end(input);
  return new Promise((done, fail) => {
    child.on('error', fail);
    child.on('close', (status) => done({ ...out, status }));
  });
}

const cli = (args: string[]): Promise<Ran> => run(process.execPath, [...NODE_ARGS, ...args], '');

/** The CLI on a real terminal (util-linux `script` gives it a pty), typing `answer` at the prompt. */
function onTerminal(args: string[], answer: string): Promise<Ran> {
  const quoted = [process.execPath, ...NODE_ARGS, ...args].map((a) => `'${a}'`).join(' ');
  return run('script', ['-qec', quoted, '/dev/null'], `${answer}\n`);
}

async function ids(): Promise<string[]> {
  return (await new FileInventoryStore(dir).list()).map((r) => r.id).sort();
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hb-forget-'));
  // An ec2 checkout that died half-way: a provisioning record nobody can release (no SDK, no instance).
  await new FileInventoryStore(dir).add([
    sampleRecord('lost-1', { name: 'web-1', provider: 'ec2', recipe: { provider: 'ec2', args: {} } }),
    sampleRecord('lost-2', { name: 'web-2', provider: 'ec2', recipe: { provider: 'ec2', args: {} } }),
    sampleRecord('keep-1', { name: 'db-1', state: 'ready' }),
  ]);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('hostbroker forget', { timeout: 60_000 }, () => {
  it('refuses without --yes when stdin is not a terminal, and drops nothing', async () => {
    const out = join(dir, 'out.json');
    const r = await cli(['forget', 'web-1', '--output-file', out]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--yes');
    expect(JSON.parse(await readFile(out, 'utf8')).error).toMatchObject({ code: 'USER_INPUT' });
    expect(await ids()).toEqual(['keep-1', 'lost-1', 'lost-2']);
  });

  it('with --yes drops the named records, by name or id, without touching the others, and says what it dropped', async () => {
    const r = await cli(['forget', 'web-1', 'lost-2', '--yes', '--json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      { id: 'lost-1', name: 'web-1', provider: 'ec2', state: 'provisioning' },
      { id: 'lost-2', name: 'web-2', provider: 'ec2', state: 'provisioning' },
    ]);
    expect(await ids()).toEqual(['keep-1']);
    // The log line names what was dropped, for whoever reads the run later.
    expect(r.stderr).toMatch(/forgot 2 record\(s\)/);
  });

  it('fails on an unknown host and drops nothing', async () => {
    const r = await cli(['forget', 'web-1', 'nosuch', '--yes']);
    expect(r.status).toBe(2);
    expect(await ids()).toEqual(['keep-1', 'lost-1', 'lost-2']);
  });

  it('asks on a terminal: "y" drops, anything else keeps', async () => {
    const no = await onTerminal(['forget', 'web-1'], 'n');
    expect(no.stdout).toContain('Forget 1 record(s) without releasing them: web-1 (lost-1, ec2, provisioning)?');
    expect(no.stdout).toContain('nothing forgotten');
    expect(await ids()).toEqual(['keep-1', 'lost-1', 'lost-2']);
    const yes = await onTerminal(['forget', 'web-1'], 'y');
    expect(yes.stdout).toContain('forgot 1 record(s) without releasing them: web-1');
    expect(await ids()).toEqual(['keep-1', 'lost-2']);
  });
});
