/**
 * Starts a real OpenStack Keystone (Debian's python3-keystone) on 127.0.0.1 for a test: its own
 * temp dir with a SQLite database and fernet keys, bootstrapped with an admin user, served by the
 * package's keystone-wsgi-public. scripts/setup-test-env.sh installs the package.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './sshd.js';

const run = promisify(execFile);
const MANAGE = '/usr/bin/keystone-manage';
const SERVE = '/usr/bin/keystone-wsgi-public';

/** Whether Keystone can run here; in CI a missing Keystone is a failure, not a skip. */
export function keystoneAvailable(): boolean {
  const ok = existsSync(MANAGE) && existsSync(SERVE);
  if (!ok && process.env.CI === 'true') throw new Error(`${MANAGE} is missing in CI: scripts/setup-test-env.sh installs python3-keystone.`);
  return ok;
}

export interface Keystone {
  /** The v3 URL, e.g. http://127.0.0.1:PORT/v3 */
  url: string;
  adminPassword: string;
  process: ChildProcess;
  /** A project-scoped admin token (fresh each call). */
  adminToken(): Promise<string>;
  /** A call to the identity API as admin; returns the parsed JSON body. */
  admin(method: string, path: string, body?: unknown): Promise<Record<string, unknown>>;
  /** Checks a token as a service does (GET /v3/auth/tokens): the HTTP status Keystone answers. */
  validate(subject: string): Promise<number>;
  /** Revokes a token (DELETE /v3/auth/tokens). */
  revoke(subject: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startKeystone(): Promise<Keystone> {
  const dir = await mkdtemp(join(tmpdir(), 'hb-keystone-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/v3`;
  const adminPassword = `admin-${Math.random().toString(36).slice(2)}`;
  const conf = join(dir, 'keystone.conf');
  await writeFile(
    conf,
    [
      '[DEFAULT]',
      `log_file = ${join(dir, 'keystone.log')}`,
      '[database]',
      `connection = sqlite:///${join(dir, 'keystone.db')}`,
      '[token]',
      'provider = fernet',
      'expiration = 3600',
      '[fernet_tokens]',
      `key_repository = ${join(dir, 'fernet-keys')}`,
      '[fernet_receipts]',
      `key_repository = ${join(dir, 'fernet-keys')}`,
      '[credential]',
      `key_repository = ${join(dir, 'credential-keys')}`,
      '',
    ].join('\n'),
  );
  const user = ['--keystone-user', String(process.getuid?.() ?? 0), '--keystone-group', String(process.getgid?.() ?? 0)];
  const manage = (...args: string[]) => run(MANAGE, ['--config-file', conf, ...args], { cwd: dir, timeout: 120_000 });
  await manage('db_sync');
  // Keystone leaves a read transaction open after some writes (creating an endpoint); in SQLite's
  // default journal that blocks the next write ("database is locked"). WAL lets writers pass readers.
  await run('python3', ['-c', 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")', join(dir, 'keystone.db')]);
  await manage('fernet_setup', ...user);
  await manage('credential_setup', ...user);
  await manage('bootstrap', '--bootstrap-password', adminPassword, '--bootstrap-public-url', `${url}/`, '--bootstrap-region-id', 'RegionOne');
  // The WSGI server's own errors (tracebacks of a 500) go to its stderr: kept next to the log.
  const stderr = openSync(join(dir, 'server.log'), 'a');
  const child = spawn(SERVE, ['--host', '127.0.0.1', '--port', String(port), '--', '--config-file', conf], { cwd: dir, stdio: ['ignore', stderr, stderr] });
  closeSync(stderr);

  const adminToken = async (): Promise<string> => {
    const res = await fetch(`${url}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: adminPassword } } },
          scope: { project: { name: 'admin', domain: { id: 'default' } } },
        },
      }),
    });
    if (res.status !== 201) throw new Error(`keystone admin token: HTTP ${res.status}`);
    return res.headers.get('x-subject-token')!;
  };
  const end = Date.now() + 60_000;
  for (;;) {
    const up = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (child.exitCode !== null || Date.now() > end) throw new Error(`keystone did not serve on ${url} (see ${join(dir, 'keystone.log')})`);
    await new Promise((r) => setTimeout(r, 200));
  }
  let token: string | undefined;
  return {
    url,
    adminPassword,
    process: child,
    adminToken,
    async admin(method, path, body) {
      token ??= await adminToken();
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { 'X-Auth-Token': token, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      if (res.status >= 400) {
        const log = await readFile(join(dir, 'server.log'), 'utf8').catch(() => '');
        throw new Error(`keystone ${method} ${path}: HTTP ${res.status} ${await res.text()}\n${log.split('\n').slice(-30).join('\n')}`);
      }
      return res.status === 204 ? {} : ((await res.json()) as Record<string, unknown>);
    },
    async validate(subject) {
      token ??= await adminToken();
      const res = await fetch(`${url}/auth/tokens`, { headers: { 'X-Auth-Token': token, 'X-Subject-Token': subject } });
      await res.arrayBuffer();
      return res.status;
    },
    async revoke(subject) {
      token ??= await adminToken();
      const res = await fetch(`${url}/auth/tokens`, { method: 'DELETE', headers: { 'X-Auth-Token': token, 'X-Subject-Token': subject } });
      if (res.status !== 204) throw new Error(`keystone revoke: HTTP ${res.status}`);
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      // HB_KEEP=1 keeps the dir (config, database, server.log) to look at after a failure.
      if (!process.env.HB_KEEP) await rm(dir, { recursive: true, force: true });
    },
  };
}
