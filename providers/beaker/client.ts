/**
 * The part of Beaker's server API the provider uses. Authentication: `POST /auth/login_password`
 * (or `/auth/login_oauth2` with an access token) sets the `beaker_auth_token` cookie, which goes
 * with every later request. Jobs are submitted and listed through the documented XML-RPC
 * endpoint `/RPC2` (`jobs.upload`, `jobs.filter`); job and recipe state, cancelling and the
 * watchdog use the HTTP resources (`/jobs/<id>`, `/jobs/<id>/status`, `/recipes/<id>/watchdog`).
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { ProviderError, SettingsError } from '../../lib/errors.js';
import { HttpClient, type RequestOptions } from '../../lib/http.js';
import { tlsOptionsOf } from '../../lib/http-settings.js';
import type { ProviderContext } from '../../lib/provider.js';
import { registerSecret, scrub } from '../../lib/secrets.js';
import { toMs } from '../../lib/settings.js';
import type { BeakerInstance } from './definition.js';
import { decodeResponse, encodeCall, XmlRpcFault, type XmlRpcValue } from './xml.js';

const COOKIE = 'beaker_auth_token';

export const Task = lazySchema(() => z.looseObject({ id: z.number().int().optional(), name: z.string().nullish(), status: z.string().nullish() }));

/** The fields Beaker's job and recipe answers share (both are Beaker task objects with a whiteboard). */
const taskFields = () => ({ id: z.number().int(), status: z.string(), result: z.string().nullish(), whiteboard: z.string().nullish() });

export const Recipe = lazySchema(() =>
  z.looseObject({
    ...taskFields(),
    resource: z.looseObject({ fqdn: z.string().nullish(), system: z.looseObject({ fqdn: z.string().nullish() }).nullish() }).nullish(),
    tasks: z.array(Task).nullish(),
  }),
);
export type Recipe = z.infer<typeof Recipe>;

export const Job = lazySchema(() =>
  z.looseObject({
    ...taskFields(),
    recipesets: z.array(z.looseObject({ id: z.number().int().optional(), recipes: z.array(Recipe) })),
  }),
);
export type Job = z.infer<typeof Job>;

/** Statuses after which a recipe or job does nothing more. */
export const FINISHED = new Set(['Completed', 'Cancelled', 'Aborted']);

/** The FQDN of the system a recipe runs on, once it has one. */
export function fqdnOf(recipe: Recipe): string | undefined {
  return recipe.resource?.fqdn ?? recipe.resource?.system?.fqdn ?? undefined;
}

/** Whether a recipe's system is reserved for us: status Reserved, or the reservesys task running. */
export function isReserved(recipe: Recipe): boolean {
  if (recipe.status === 'Reserved') return true;
  return recipe.status === 'Running' && !!recipe.tasks?.some((t) => t.name === '/distribution/reservesys' && t.status === 'Running');
}

/** A logged-in session with one Beaker server. */
export class BeakerClient {
  readonly http: HttpClient;
  readonly settings: BeakerInstance;
  readonly provider: string;
  private cookie: string | undefined;
  private login: Promise<void> | undefined;
  private readonly credentials: { kind: 'password'; username: string; password: string } | { kind: 'token'; token: string };

  /** `directory`: the broker directory, against which a relative `ca_file` is resolved. */
  constructor(settings: BeakerInstance, provider = 'beaker', directory = process.cwd()) {
    this.settings = settings;
    this.provider = provider;
    const token = settings.token ?? process.env[settings.tokenEnv];
    const password = settings.password ?? process.env[settings.passwordEnv];
    if (settings.username && password) this.credentials = { kind: 'password', username: settings.username, password };
    else if (token) this.credentials = { kind: 'token', token };
    else {
      throw new SettingsError(
        `${provider}: no credentials. Set ${provider}.username and put the password in the environment variable ${settings.passwordEnv}, ` +
          `or put an OAuth2 access token in ${settings.tokenEnv}. (Kerberos login is not supported by hostbroker.)`,
      );
    }
    registerSecret(password);
    registerSecret(token);
    this.http = new HttpClient({
      baseUrl: settings.url,
      provider,
      headers: (): Record<string, string> => (this.cookie ? { Cookie: `${COOKIE}=${this.cookie}` } : {}),
      timeoutMs: toMs(settings.requestTimeout),
      retries: settings.retries,
      tls: tlsOptionsOf(settings, directory),
      authHint:
        this.credentials.kind === 'password'
          ? `check ${provider}.username and the password in ${settings.password ? `${provider}.password` : settings.passwordEnv}`
          : `check the access token in ${settings.token ? `${provider}.token` : settings.tokenEnv}`,
      // Beaker's HTTP errors are plain text.
      errorMessage: (json, text) => (typeof json === 'object' && json ? undefined : text.trim().slice(0, 300) || undefined),
    });
  }

  static fromContext(ctx: ProviderContext<BeakerInstance>): BeakerClient {
    return new BeakerClient(ctx.instanceSettings, ctx.provider, ctx.directory);
  }

  /**
   * Logs in once; concurrent callers share the same login. It takes no abort signal: one caller
   * giving up must not fail the others' login (the request timeout still bounds it).
   */
  ensureLogin(): Promise<void> {
    this.login ??= this.doLogin().catch((error: unknown) => {
      this.login = undefined;
      throw error;
    });
    return this.login;
  }

  private async doLogin(): Promise<void> {
    const c = this.credentials;
    const json: Record<string, string> = c.kind === 'password' ? { username: c.username, password: c.password } : { access_token: c.token };
    if (this.settings.proxyUser) json.proxy_user = this.settings.proxyUser;
    const res = await this.http.request('POST', c.kind === 'password' ? '/auth/login_password' : '/auth/login_oauth2', { json, idempotent: true });
    const cookie = res.headers
      .getSetCookie()
      .map((h) => new RegExp(`^${COOKIE}=([^;]*)`).exec(h)?.[1])
      .find((v) => v && v !== 'deleted');
    if (!cookie)
      throw new ProviderError(
        this.provider,
        `login to ${this.settings.url} succeeded but set no ${COOKIE} cookie; check that the URL is the Beaker server's base URL.`,
      );
    registerSecret(cookie);
    this.cookie = cookie;
  }

  /** An authenticated request; logs in again once when the session has expired. */
  async request(method: string, path: string, options: RequestOptions = {}) {
    await this.ensureLogin();
    const used = this.cookie;
    try {
      return await this.http.request(method, path, options);
    } catch (error) {
      const status = (error as ProviderError).status;
      if (status !== 401 && status !== 403) throw error;
      // Another caller may have logged in again already.
      if (this.cookie === used) {
        this.cookie = undefined;
        this.login = undefined;
      }
      await this.ensureLogin();
      return this.http.request(method, path, options);
    }
  }

  async json<S extends z.ZodType>(method: string, path: string, schema: S, options: RequestOptions = {}): Promise<z.output<S>> {
    const res = await this.request(method, path, { ...options, headers: { Accept: 'application/json', ...options.headers } });
    return this.http.parse(`${method} ${path}`, res.text, schema);
  }

  /** Calls an XML-RPC method; a fault becomes a ProviderError with the server's fault string. */
  async call(method: string, params: XmlRpcValue[], signal?: AbortSignal): Promise<XmlRpcValue> {
    const used = this.cookie;
    try {
      return await this.callOnce(method, params, signal);
    } catch (error) {
      // XML-RPC reports an expired session as a fault, not a 401: log in again once.
      if (!(error instanceof ProviderError) || !/Anonymous access denied|Please log in/i.test(error.message)) throw error;
      if (this.cookie === used) {
        this.cookie = undefined;
        this.login = undefined;
      }
      return this.callOnce(method, params, signal);
    }
  }

  private async callOnce(method: string, params: XmlRpcValue[], signal?: AbortSignal): Promise<XmlRpcValue> {
    const res = await this.request('POST', '/RPC2', {
      body: encodeCall(method, params),
      headers: { 'Content-Type': 'text/xml' },
      signal,
      // Only reads may be sent twice.
      idempotent: !/\.(upload|delete_jobs|stop)$/.test(method),
    });
    try {
      return decodeResponse(res.text);
    } catch (error) {
      if (error instanceof XmlRpcFault) {
        // Faults look like "<class 'bkr.common.bexceptions.BX'>:Invalid distro"; keep the message part.
        const message = error.faultString.replace(/^<class '[^']*'>:\s*/, '');
        throw new ProviderError(this.provider, `${method} failed: ${scrub(message)}`, { status: error.faultCode || undefined });
      }
      throw new ProviderError(
        this.provider,
        `${method} answered with something that is not XML-RPC (${(error as Error).message}); check that ${this.settings.url} is a Beaker server.`,
      );
    }
  }

  /** Submits a job XML; returns the job id (number). */
  async submit(jobXml: string, signal?: AbortSignal): Promise<number> {
    const answer = await this.call('jobs.upload', [jobXml], signal);
    const m = /^J:(\d+)$/.exec(String(answer));
    if (!m)
      throw new ProviderError(
        this.provider,
        `jobs.upload answered ${JSON.stringify(answer)}, not a job id like J:123; the server version may not be supported.`,
      );
    return Number(m[1]);
  }

  /** Ids of the user's latest jobs, newest first. */
  async myJobIds(limit: number, signal?: AbortSignal): Promise<number[]> {
    const answer = await this.call('jobs.filter', [{ mine: true, limit }], signal);
    if (!Array.isArray(answer))
      throw new ProviderError(this.provider, 'jobs.filter did not answer with a list of job ids; the server version may not be supported.');
    return answer.map((j) => Number(/^J:(\d+)$/.exec(String(j))?.[1])).filter((n) => Number.isInteger(n) && n > 0);
  }

  /** A job, or undefined when it does not exist (404). */
  async job(id: number, signal?: AbortSignal): Promise<Job | undefined> {
    try {
      return await this.json('GET', `/jobs/${id}`, Job, { signal });
    } catch (error) {
      if ((error as ProviderError).status === 404) return undefined;
      throw error;
    }
  }

  /** Cancels a job. A job that is gone counts as cancelled. */
  async cancel(id: number, msg: string, signal?: AbortSignal): Promise<void> {
    await this.request('POST', `/jobs/${id}/status`, {
      json: { status: 'Cancelled', msg },
      signal,
      idempotent: true,
      ok: (s) => (s >= 200 && s < 300) || s === 404,
    });
  }

  /** Sets a recipe's watchdog to expire `seconds` from now. */
  async watchdog(recipeId: number, seconds: number, signal?: AbortSignal): Promise<void> {
    await this.request('POST', `/recipes/${recipeId}/watchdog`, { json: { kill_time: seconds }, signal, idempotent: true });
  }

  async distroTrees(filter: Record<string, XmlRpcValue>, signal?: AbortSignal): Promise<XmlRpcValue> {
    return this.call('distrotrees.filter', [filter], signal);
  }
}
