/**
 * Real TLS for the HTTP tests: a CA and certificates made with the `openssl` CLI in a temp dir,
 * HTTPS servers on 127.0.0.1 that count connections and requests, and the forward proxy of
 * forward-proxy.ts as a separate process.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** PEM files of one certificate. */
export interface CertFiles {
  key: string;
  cert: string;
}

/** A test PKI: one CA and leaf certificates of several kinds, as files. */
export interface TestPki {
  dir: string;
  /** The CA certificate (what `ca_file` points at). */
  caFile: string;
  /** Signed by the CA, for 127.0.0.1 and localhost. */
  good: CertFiles;
  /** Signed by no one (its own issuer). */
  selfSigned: CertFiles;
  /** Signed by the CA, valid in 2020 only. */
  expired: CertFiles;
  /** Signed by the CA for `other.example` only. */
  otherHost: CertFiles;
  remove(): void;
}

function openssl(cwd: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes the CA and certificates (about 1 s of openssl). */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'hb-pki-'));
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/CN=hostbroker test CA');
  // `openssl ca` (unlike `x509 -req` in OpenSSL 3.0) takes explicit validity dates, for the expired one.
  mkdirSync(join(dir, 'db'));
  writeFileSync(join(dir, 'db', 'index.txt'), '');
  writeFileSync(join(dir, 'db', 'serial'), '1000\n');
  writeFileSync(
    join(dir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = test',
      '[test]',
      'dir = db',
      'database = db/index.txt',
      'serial = db/serial',
      'new_certs_dir = db',
      'certificate = ca.pem',
      'private_key = ca.key',
      'default_md = sha256',
      'policy = any',
      'copy_extensions = copy',
      'unique_subject = no',
      '[any]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  const leaf = (name: string, san: string, dates: string[] = ['-days', '30']): CertFiles => {
    openssl(
      dir,
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=${san}`,
    );
    openssl(dir, 'ca', '-batch', '-config', 'ca.cnf', '-in', `${name}.csr`, '-out', `${name}.pem`, '-notext', ...dates);
    return { key: join(dir, `${name}.key`), cert: join(dir, `${name}.pem`) };
  };
  const good = leaf('good', 'IP:127.0.0.1,DNS:localhost');
  const expired = leaf('expired', 'IP:127.0.0.1,DNS:localhost', ['-startdate', '20200101000000Z', '-enddate', '20200201000000Z']);
  const otherHost = leaf('other', 'DNS:other.example');
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'self.key',
    '-out',
    'self.pem',
    '-days',
    '30',
    '-subj',
    '/CN=self',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  );
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    good,
    selfSigned: { key: join(dir, 'self.key'), cert: join(dir, 'self.pem') },
    expired,
    otherHost,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

type Handler = (req: IncomingMessage, res: ServerResponse, hit: number) => void;

/** A server under test: its URL, what reached it, and how to stop it. */
export interface TestServer {
  url: string;
  /** TCP connections accepted (a refused certificate still makes one). */
  connections: number;
  /** Requests that got through (method and path). */
  requests: { method: string; path: string }[];
  close(): Promise<void>;
}

async function serve(server: ReturnType<typeof createHttpServer>, scheme: string, handler: Handler): Promise<TestServer> {
  const state: TestServer = {
    url: '',
    connections: 0,
    requests: [],
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('connection', () => state.connections++);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    state.requests.push({ method: req.method ?? '', path: req.url ?? '' });
    handler(req, res, state.requests.length);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

/** An HTTPS server on 127.0.0.1 presenting `cert`. */
export function startHttpsServer(cert: CertFiles, handler: Handler): Promise<TestServer> {
  const server = createHttpsServer({ key: readFileSync(cert.key), cert: readFileSync(cert.cert) });
  // https.Server is an http.Server for everything serve() uses.
  return serve(server as unknown as ReturnType<typeof createHttpServer>, 'https', handler);
}

/** A plain HTTP server on 127.0.0.1. */
export function startHttpServer(handler: Handler): Promise<TestServer> {
  return serve(createHttpServer(), 'http', handler);
}

/** The forward proxy process. */
export interface ForwardProxy {
  /** `http://127.0.0.1:PORT`, for HTTPS_PROXY / HTTP_PROXY. */
  url: string;
  /** What it carried: CONNECT `host:port` tunnels and plain requests by target host. */
  seen(): Promise<{ method: string; target: string }[]>;
  stop(): Promise<void>;
}

/** Starts forward-proxy.ts in its own node process and waits for its port. */
export async function startForwardProxy(): Promise<ForwardProxy> {
  const script = fileURLToPath(new URL('./forward-proxy.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the forward proxy exited with ${code} before listening`)));
  });
  const url = `http://127.0.0.1:${port.trim()}`;
  return {
    url,
    // Asked with a plain request to the proxy itself (Node's fetch here, not the code under test).
    seen: async () => (await (await fetch(`${url}/__seen`)).json()) as { method: string; target: string }[],
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
