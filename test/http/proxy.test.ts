/**
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY through a real forward proxy process on loopback: what went
 * through it is what the proxy itself recorded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError, TlsError } from '../../lib/errors.js';
import { HttpClient } from '../../lib/http.js';
import { rejection } from '../helpers/rejection.js';
import { type ForwardProxy, makePki, startForwardProxy, startHttpServer, startHttpsServer, type TestPki, type TestServer } from '../helpers/tls.js';

let pki: TestPki;
let proxy: ForwardProxy;
let secure: TestServer;
let plain: TestServer;

const ok = (_req: unknown, res: import('node:http').ServerResponse) => res.end('{"ok":true}');

beforeAll(async () => {
  pki = makePki();
  [proxy, secure, plain] = await Promise.all([startForwardProxy(), startHttpsServer(pki.good, ok), startHttpServer(ok)]);
});
afterAll(async () => {
  await Promise.all([proxy?.stop(), secure?.close(), plain?.close()]);
  pki?.remove();
});

const hostOf = (url: string) => new URL(url).host;
const client = (baseUrl: string, env: NodeJS.ProcessEnv, caFile?: string) =>
  new HttpClient({ baseUrl, provider: 'foreman', env, retries: 2, retryDelayMs: 1, ...(caFile ? { tls: { caFile } } : {}) });

describe('proxy variables', () => {
  it('HTTPS_PROXY tunnels https requests through the proxy, with the instance CA trusted inside the tunnel', async () => {
    const before = (await proxy.seen()).length;
    const response = await client(secure.url, { HTTPS_PROXY: proxy.url }, pki.caFile).request('GET', '/api/hosts');
    expect(response.status).toBe(200);
    expect((await proxy.seen()).slice(before)).toEqual([{ method: 'CONNECT', target: hostOf(secure.url) }]);
    expect(secure.requests.at(-1)).toEqual({ method: 'GET', path: '/api/hosts' });
  });

  it('lower-case https_proxy is read too', async () => {
    // Another server: the tunnel to the first one is kept alive and would be reused.
    const other = await startHttpsServer(pki.good, ok);
    try {
      const before = (await proxy.seen()).length;
      await client(other.url, { https_proxy: proxy.url }, pki.caFile).request('GET', '/lower');
      expect((await proxy.seen()).slice(before)).toEqual([{ method: 'CONNECT', target: hostOf(other.url) }]);
    } finally {
      await other.close();
    }
  });

  it('HTTP_PROXY carries plain http requests as absolute-URI requests', async () => {
    const before = (await proxy.seen()).length;
    const response = await client(plain.url, { HTTP_PROXY: proxy.url }).request('GET', '/api/v1/machine');
    expect(response.status).toBe(200);
    expect((await proxy.seen()).slice(before)).toEqual([{ method: 'GET', target: hostOf(plain.url) }]);
    expect(plain.requests.at(-1)).toEqual({ method: 'GET', path: '/api/v1/machine' });
  });

  it('NO_PROXY (host, or host:port) sends the request straight to the service', async () => {
    for (const noProxy of ['127.0.0.1', hostOf(secure.url), 'example.com, 127.0.0.1']) {
      const before = (await proxy.seen()).length;
      const hits = secure.requests.length;
      await client(secure.url, { HTTPS_PROXY: proxy.url, NO_PROXY: noProxy }, pki.caFile).request('GET', '/direct');
      expect((await proxy.seen()).slice(before)).toEqual([]);
      expect(secure.requests.length).toBe(hits + 1);
    }
  });

  it('a NO_PROXY entry for another port does not bypass the proxy', async () => {
    const before = (await proxy.seen()).length;
    await client(secure.url, { HTTPS_PROXY: proxy.url, NO_PROXY: '127.0.0.1:1' }, pki.caFile).request('GET', '/other-port');
    expect((await proxy.seen()).slice(before)).toEqual([{ method: 'CONNECT', target: hostOf(secure.url) }]);
  });

  it('an untrusted certificate behind the proxy is still a TlsError, tunnelled once and not retried', async () => {
    const before = (await proxy.seen()).length;
    const hits = secure.connections;
    const error = await rejection<TlsError>(client(secure.url, { HTTPS_PROXY: proxy.url }).request('GET', '/untrusted'));
    expect(error).toBeInstanceOf(TlsError);
    expect(error.tlsCode).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect((await proxy.seen()).slice(before)).toHaveLength(1);
    expect(secure.connections).toBe(hits + 1);
  });

  it('insecure: true applies inside the tunnel', async () => {
    const response = await new HttpClient({ baseUrl: secure.url, provider: 'beaker', env: { HTTPS_PROXY: proxy.url }, tls: { insecure: true } }).request(
      'GET',
      '/insecure',
    );
    expect(response.status).toBe(200);
  });

  it('a proxy that is down is a connection error that names the proxy, after the allowed retries', async () => {
    const dead = await startHttpServer(ok);
    const deadUrl = dead.url;
    await dead.close();
    const error = await rejection<ProviderError>(client(secure.url, { HTTPS_PROXY: `http://user:pw@${hostOf(deadUrl)}` }, pki.caFile).request('GET', '/'));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).not.toBeInstanceOf(TlsError);
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(`through the proxy ${hostOf(deadUrl)}`);
    expect(error.message).toContain('after 3 attempt(s)');
    expect(error.message).not.toContain('pw');
  });
});
