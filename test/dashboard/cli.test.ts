// `hostbroker serve` as a user starts it: beyond loopback it prints a token once (the file keeps
// only its hash) and a login link, serves until SIGINT, and exits 0 without touching any host.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { call } from './helpers.js';
import { NODE_ARGS } from '../helpers/cli-process.js';

it('serve beyond loopback prints a token once and a login link, and stops on SIGINT', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'hb-dash-cli-'));
  const child = spawn(process.execPath, [...NODE_ARGS, 'serve', '--host', '0.0.0.0', '--port', '0', '--directory', directory], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  try {
    await new Promise<void>((done, fail) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += String(d);
        if (/login link .*\n/.test(stderr)) done();
      });
      child.on('exit', () => fail(new Error(`serve exited early: ${stderr}`)));
    });
    const port = /dashboard at http:\/\/0\.0\.0\.0:(\d+)\//.exec(stderr)![1];
    const token = /only its hash is stored\): (hbd_\S+)/.exec(stderr)![1]!;
    expect(await readFile(join(directory, 'dashboard-tokens.json'), 'utf8')).not.toContain(token);
    const base = `http://127.0.0.1:${port}/api/hosts`;
    expect((await call(base)).status).toBe(401);
    expect((await call(base, { headers: { authorization: `Bearer ${token}` } })).body).toMatchObject({ total: 0 });
    const link = /login link \(10 minutes\): (\S+)/.exec(stderr)![1]!.replace('0.0.0.0', '127.0.0.1');
    expect((await call(link)).status).toBe(303);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stderr).toContain('stopping the dashboard');
  } finally {
    child.kill('SIGKILL');
    await rm(directory, { recursive: true, force: true });
  }
});
