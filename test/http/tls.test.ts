/**
 * TLS against a real HTTPS server with a CA made for the test: `ca_file` trust, `insecure`, and
 * each kind of refused certificate as a TlsError with its code, never retried.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError, SettingsError, TlsError } from '../../lib/errors.js';
import { HttpClient, type HttpClientOptions } from '../../lib/http.js';
import { makePki, startHttpServer, startHttpsServer, type CertFiles, type TestPki, type TestServer } from '../helpers/tls.js';
import { rejection } from '../helpers/rejection.js';

let pki: TestPki;
const servers: TestServer[] = [];

beforeAll(() => {
  pki = makePki();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  pki?.remove();
});

async function https(cert: CertFiles): Promise<TestServer> {
  const server = await startHttpsServer(cert, (_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  servers.push(server);
  return server;
}

function client(server: TestServer, options: Partial<HttpClientOptions> = {}): HttpClient {
  // No proxy variables: these requests go straight to the server.
  return new HttpClient({ baseUrl: server.url, provider: 'tower', retries: 3, retryDelayMs: 1, env: {}, ...options });
}

describe('certificates', () => {
  it('trusts a server whose CA is the instance ca_file', async () => {
    const server = await https(pki.good);
    const response = await client(server, { tls: { caFile: pki.caFile } }).request('GET', '/api/v2/ping/');
    expect(response.status).toBe(200);
    expect(JSON.parse(response.text)).toEqual({ ok: true });
    expect(server.requests).toEqual([{ method: 'GET', path: '/api/v2/ping/' }]);
  });

  it('refuses a CA it was not given, says to set ca_file or insecure, and does not retry', async () => {
    const server = await https(pki.good);
    const error = await rejection<TlsError>(client(server).request('GET', '/api/v2/ping/'));
    expect(error).toBeInstanceOf(TlsError);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.code).toBe('PROVIDER');
    expect(error.tlsCode).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(error.host).toBe(new URL(server.url).host);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('certificate not trusted');
    expect(error.message).toContain(new URL(server.url).host);
    expect(error.message).toContain('`ca_file`');
    expect(error.message).toContain('`insecure: true`');
    expect(error.toJSON()).toMatchObject({ tlsCode: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', host: new URL(server.url).host });
    // One TLS handshake, no request: retries were allowed (3) but not used.
    expect(server.connections).toBe(1);
    expect(server.requests).toHaveLength(0);
  });

  it('reports a self-signed certificate as DEPTH_ZERO_SELF_SIGNED_CERT, and a CA file that does not sign it does not help', async () => {
    const server = await https(pki.selfSigned);
    const error = await rejection<TlsError>(client(server, { tls: { caFile: pki.caFile } }).request('GET', '/'));
    expect(error).toBeInstanceOf(TlsError);
    expect(error.tlsCode).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(error.message).toContain('certificate not trusted');
    expect(server.connections).toBe(1);
  });

  it('reports an expired certificate as CERT_HAS_EXPIRED even with its CA trusted', async () => {
    const server = await https(pki.expired);
    const error = await rejection<TlsError>(client(server, { tls: { caFile: pki.caFile } }).request('GET', '/'));
    expect(error.tlsCode).toBe('CERT_HAS_EXPIRED');
    expect(error.message).toMatch(/has expired/);
    expect(error.message).toContain('`insecure: true`');
    expect(server.connections).toBe(1);
  });

  it('reports a certificate for another host name, naming the names it is for', async () => {
    const server = await https(pki.otherHost);
    const error = await rejection<TlsError>(client(server, { tls: { caFile: pki.caFile } }).request('GET', '/'));
    expect(error.tlsCode).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(error.message).toContain('DNS:other.example');
    expect(server.connections).toBe(1);
  });

  it('insecure: true skips verification (self-signed, expired, other host)', async () => {
    for (const cert of [pki.selfSigned, pki.expired, pki.otherHost]) {
      const server = await https(cert);
      const response = await client(server, { tls: { insecure: true } }).request('GET', '/x');
      expect(response.status).toBe(200);
      expect(server.requests).toHaveLength(1);
    }
  });

  it('an https URL at a plain-HTTP port is a TLS error that names the scheme, not retried', async () => {
    const server = await startHttpServer((_req, res) => res.end('plain'));
    servers.push(server);
    const error = await rejection<TlsError>(client({ ...server, url: server.url.replace('http:', 'https:') }).request('GET', '/'));
    expect(error).toBeInstanceOf(TlsError);
    expect(error.tlsCode).toMatch(/^ERR_SSL_/);
    expect(error.message).toMatch(/scheme \(https or http\)/);
    expect(server.connections).toBe(1);
  });

  it('a ca_file that cannot be read is a SettingsError naming it, before any connection', async () => {
    const server = await https(pki.good);
    const missing = `${pki.dir}/nope.pem`;
    const error = await rejection<SettingsError>(client(server, { tls: { caFile: missing } }).request('GET', '/'));
    expect(error).toBeInstanceOf(SettingsError);
    expect(error.code).toBe('SETTINGS');
    expect(error.message).toContain(missing);
    expect(error.message).toContain('ENOENT');
    const notPem = await rejection<SettingsError>(client(server, { tls: { caFile: pki.good.key.replace('.key', '.csr') } }).request('GET', '/'));
    expect(notPem.message).toMatch(/holds no PEM certificate/);
    expect(server.connections).toBe(0);
  });
});
