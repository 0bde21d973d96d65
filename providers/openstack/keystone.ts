/**
 * A Keystone v3 session: one token shared by every request (and every concurrent checkout) until
 * it is close to expiry or a service answers 401, then one new token for all. The service catalog
 * of the token gives each service's endpoint by type, interface and region.
 * @module
 */
import type { z } from 'zod';
import { ProviderError } from '../../lib/errors.js';
import { HttpClient, type HttpResponse, type RequestOptions } from '../../lib/http.js';
import type { Logger } from '../../lib/logger.js';
import { registerSecret } from '../../lib/secrets.js';
import type { ResolvedCloud } from './config.js';
import { type CatalogEntry, TokenResponse } from './schemas.js';

const PROVIDER = 'openstack';
/** A token this close to its expiry is renewed before use. */
const RENEW_MARGIN_MS = 2 * 60_000;

/** Options of a {@link KeystoneSession}. */
export interface KeystoneOptions {
  cloud: ResolvedCloud;
  fetch?: typeof fetch;
  /** Clock (tests move it forward). */
  now?: () => number;
  timeoutMs: number;
  retries: number;
  retryDelayMs: number;
  logger?: Logger;
}

interface Token {
  value: string;
  expiresAt: number;
  catalog: CatalogEntry[];
}

/** Service types hostbroker uses, as named in the catalog. */
export type ServiceType = 'compute' | 'image' | 'network';

/** An authenticated Keystone v3 session. Safe to share between concurrent checkouts. */
export class KeystoneSession {
  readonly cloud: ResolvedCloud;
  private readonly options: KeystoneOptions;
  private readonly identity: HttpClient;
  private current: Token | undefined;
  private pending: Promise<Token> | undefined;
  private readonly services = new Map<ServiceType, ServiceClient>();

  constructor(options: KeystoneOptions) {
    this.options = options;
    this.cloud = options.cloud;
    this.identity = new HttpClient({
      baseUrl: options.cloud.authUrl,
      provider: PROVIDER,
      fetch: options.fetch,
      timeoutMs: options.timeoutMs,
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
      tls: options.cloud.tls,
      errorMessage: openstackErrorMessage,
      authHint: `check the credentials in ${options.cloud.source}`,
    });
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** A valid token, reusing the current one until it is close to expiry. Concurrent callers share one request. */
  async token(signal?: AbortSignal): Promise<Token> {
    if (this.current && this.current.expiresAt - this.now() > RENEW_MARGIN_MS) return this.current;
    this.pending ??= this.authenticate(signal).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** Forgets `value` if it is still the current token (a service refused it). */
  invalidate(value: string): void {
    if (this.current?.value === value) this.current = undefined;
  }

  /** The client of one service, found in the catalog. */
  service(type: ServiceType): ServiceClient {
    let client = this.services.get(type);
    if (!client) {
      client = new ServiceClient(this, type, this.options);
      this.services.set(type, client);
    }
    return client;
  }

  /** The endpoint URL of a service type for the configured interface and region. */
  async endpoint(type: ServiceType, signal?: AbortSignal): Promise<string> {
    const { catalog } = await this.token(signal);
    const { interface: iface, regionName } = this.cloud;
    const entries = catalog.filter((e) => e.type === type);
    const found = entries
      .flatMap((e) => e.endpoints)
      .find((ep) => ep.interface === iface && (!regionName || ep.region === regionName || ep.region_id === regionName));
    if (!found) {
      const offered = catalog.flatMap((e) => e.endpoints.map((ep) => `${e.type} (${ep.interface}${ep.region ? ` ${ep.region}` : ''})`)).join(', ');
      throw new ProviderError(
        PROVIDER,
        `the service catalog of ${this.cloud.authUrl} has no \`${type}\` endpoint for interface ${iface}${regionName ? ` in region ${regionName}` : ''}; it offers ${offered || 'nothing'}. Set region_name / interface in ${this.cloud.source}.`,
      );
    }
    return found.url.replace(/\/+$/, '');
  }

  private async authenticate(signal?: AbortSignal): Promise<Token> {
    const response = await this.identity.request('POST', '/auth/tokens', {
      json: authBody(this.cloud),
      headers: { Accept: 'application/json' },
      // Asking for a token twice is harmless.
      idempotent: true,
      signal,
    });
    const value = response.headers.get('x-subject-token');
    if (!value) {
      throw new ProviderError(
        PROVIDER,
        `Keystone at ${this.cloud.authUrl} answered without an X-Subject-Token header; check that auth_url points at Keystone v3.`,
      );
    }
    registerSecret(value);
    const body = this.identity.parse('POST /auth/tokens', response.text, TokenResponse);
    const expiresAt = Date.parse(body.token.expires_at);
    const token: Token = { value, expiresAt: Number.isNaN(expiresAt) ? this.now() + 3600_000 : expiresAt, catalog: body.token.catalog };
    this.current = token;
    this.options.logger?.debug('openstack: authenticated', { authUrl: this.cloud.authUrl, expiresAt: body.token.expires_at });
    return token;
  }
}

/**
 * Requests to one OpenStack service with the session's token: a 401 gets one new token and one
 * more try (429 and 5xx are retried by the shared HTTP client, honouring `Retry-After`).
 */
export class ServiceClient {
  private readonly session: KeystoneSession;
  readonly type: ServiceType;
  private readonly options: KeystoneOptions;
  private http: Promise<HttpClient> | undefined;

  constructor(session: KeystoneSession, type: ServiceType, options: KeystoneOptions) {
    this.session = session;
    this.type = type;
    this.options = options;
  }

  private client(signal?: AbortSignal): Promise<HttpClient> {
    this.http ??= this.session.endpoint(this.type, signal).then(
      (baseUrl) =>
        new HttpClient({
          baseUrl,
          provider: PROVIDER,
          fetch: this.options.fetch,
          timeoutMs: this.options.timeoutMs,
          retries: this.options.retries,
          retryDelayMs: this.options.retryDelayMs,
          tls: this.session.cloud.tls,
          errorMessage: openstackErrorMessage,
          authHint: `check the project's roles and quota (\`openstack quota show\`, \`openstack limits show --absolute\`) for ${this.session.cloud.source}`,
        }),
    );
    this.http.catch(() => {
      this.http = undefined;
    });
    return this.http;
  }

  /** Sends a request; see the class comment for retries. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
    const http = await this.client(options.signal);
    let renewed = false;
    for (;;) {
      const token = await this.session.token(options.signal);
      try {
        return await http.request(method, path, { ...options, headers: { Accept: 'application/json', ...options.headers, 'X-Auth-Token': token.value } });
      } catch (error) {
        const status = (error as ProviderError).status;
        if (status === 401 && !renewed) {
          renewed = true;
          this.session.invalidate(token.value);
          continue;
        }
        throw error;
      }
    }
  }

  /** Sends a request and validates its JSON body. */
  async json<S extends z.ZodType>(method: string, path: string, schema: S, options: RequestOptions = {}): Promise<z.output<S>> {
    const response = await this.request(method, path, options);
    const http = await this.client(options.signal);
    return http.parse(`${this.type} ${method.toUpperCase()} ${path.replace(/\?.*$/, '')}`, response.text, schema);
  }

  /** The service's base URL (for paths that must be made absolute). */
  async baseUrl(signal?: AbortSignal): Promise<string> {
    return (await this.client(signal)).baseUrl;
  }
}

/** The Keystone v3 body asking for a token. */
export function authBody(cloud: ResolvedCloud): Record<string, unknown> {
  const a = cloud.auth;
  const userDomain = a.user_domain_id ? { id: a.user_domain_id } : a.user_domain_name ? { name: a.user_domain_name } : { id: 'default' };
  const user = a.user_id ? { id: a.user_id } : { name: a.username, domain: userDomain };
  if (cloud.method === 'application_credential') {
    const credential = a.application_credential_id
      ? { id: a.application_credential_id, secret: a.application_credential_secret }
      : { name: a.application_credential_name, secret: a.application_credential_secret, user };
    return { auth: { identity: { methods: ['application_credential'], application_credential: credential } } };
  }
  const identity = { methods: ['password'], password: { user: { ...user, password: a.password } } };
  let scope: Record<string, unknown> | undefined;
  if (a.project_id) scope = { project: { id: a.project_id } };
  else if (a.project_name) {
    const domain = a.project_domain_id ? { id: a.project_domain_id } : a.project_domain_name ? { name: a.project_domain_name } : userDomain;
    scope = { project: { name: a.project_name, domain } };
  }
  return { auth: scope ? { identity, scope } : { identity } };
}

/**
 * The service's own message from an OpenStack error body: Nova's `{"forbidden": {"message"}}`,
 * Keystone's `{"error": {"message"}}`, Neutron's `{"NeutronError": {"message"}}`, or plain text.
 */
export function openstackErrorMessage(json: unknown, text: string): string | undefined {
  // The shared client adds its own full stop.
  const clean = (m: string) => m.trim().replace(/\.$/, '').slice(0, 500) || undefined;
  if (json && typeof json === 'object' && !Array.isArray(json)) {
    const o = json as Record<string, unknown>;
    for (const value of Object.values(o)) {
      const message = value && typeof value === 'object' ? (value as Record<string, unknown>).message : undefined;
      if (typeof message === 'string' && clean(message)) return clean(message);
    }
    if (typeof o.message === 'string' && clean(o.message)) return clean(o.message);
    if (typeof o.error === 'string' && clean(o.error)) return clean(o.error);
  }
  // Glance and some proxies answer with text or HTML.
  return clean(
    text
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' ')
      .slice(0, 300),
  );
}
