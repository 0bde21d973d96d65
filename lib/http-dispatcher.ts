/**
 * The transport under {@link HttpClient}: undici's own `fetch` with a dispatcher that trusts the
 * instance's CA file (or skips verification) and goes through `HTTPS_PROXY` / `HTTP_PROXY` unless
 * `NO_PROXY` says otherwise. undici's `fetch` rather than Node's global one: a dispatcher only
 * works reliably with the fetch of the same undici copy (Node 26 bundles undici 8). undici is
 * imported on the first request, so importing hostbroker does not pay for it.
 * @module
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { SettingsError } from './errors.js';

/** TLS settings of one service. */
export interface TlsOptions {
  /** Absolute path of a PEM file with the CA certificate(s) to trust, besides Node's own roots. */
  caFile?: string;
  /** Skip certificate verification (the connection is still encrypted). */
  insecure?: boolean;
}

type Undici = typeof import('undici');
type Dispatcher = import('undici').Dispatcher;

let undici: Promise<Undici> | undefined;
const dispatchers = new Map<string, Dispatcher>();

/** The proxy variables as curl and undici read them (lower case first). */
export function proxyEnv(env: NodeJS.ProcessEnv): { httpProxy: string; httpsProxy: string; noProxy: string } {
  return {
    httpProxy: env.http_proxy ?? env.HTTP_PROXY ?? '',
    httpsProxy: env.https_proxy ?? env.HTTPS_PROXY ?? '',
    noProxy: env.no_proxy ?? env.NO_PROXY ?? '',
  };
}

/**
 * A `fetch` bound to the dispatcher for `tls` and the proxy variables in `env`. Dispatchers are
 * shared by every client with the same settings, so connections are reused across checkouts.
 */
export function dispatchingFetch(tls: TlsOptions, env: NodeJS.ProcessEnv): typeof fetch {
  const proxies = proxyEnv(env);
  const key = JSON.stringify([tls.caFile ?? '', tls.insecure === true, proxies]);
  return (async (url: string, init: RequestInit) => {
    const u = await (undici ??= import('undici'));
    let dispatcher = dispatchers.get(key);
    if (!dispatcher) {
      dispatcher = makeDispatcher(u, tls, proxies);
      dispatchers.set(key, dispatcher);
    }
    const body = init.body instanceof FormData ? toUndiciForm(u, init.body) : init.body;
    // undici's types are its own copies of the DOM ones; the shapes are the same.
    return u.fetch(url, { ...(init as object), body, dispatcher } as Parameters<Undici['fetch']>[1]) as unknown as Response;
  }) as typeof fetch;
}

function makeDispatcher(u: Undici, tls: TlsOptions, proxies: ReturnType<typeof proxyEnv>): Dispatcher {
  const connect: Record<string, unknown> = {};
  if (tls.caFile) connect.ca = [...rootCertificates, readCa(tls.caFile)];
  if (tls.insecure) connect.rejectUnauthorized = false;
  if (!proxies.httpProxy && !proxies.httpsProxy) return new u.Agent({ connect });
  // `connect` is for direct connections, `requestTls` for the TLS inside a proxy's CONNECT tunnel.
  // Plain http goes as absolute-URI requests, as curl sends it: proxies often allow CONNECT to 443 only.
  return new u.EnvHttpProxyAgent({ ...proxies, connect, requestTls: connect, proxyTunnel: false });
}

function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new SettingsError(
      `ca_file ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); point it at a PEM file with the CA certificate(s) of the service.`,
      { cause: error },
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new SettingsError(
      `ca_file ${file} holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line); convert it with \`openssl x509 -in FILE -out ca.pem\`.`,
    );
  }
  return pem;
}

/** Node's global FormData is another undici copy's class: undici's fetch would send it as text. */
function toUndiciForm(u: Undici, form: FormData): InstanceType<Undici['FormData']> {
  const out = new u.FormData();
  for (const [name, value] of form) {
    if (typeof value === 'string') out.append(name, value);
    else out.append(name, value, value.name);
  }
  return out;
}
