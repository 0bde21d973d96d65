/**
 * `hostbroker serve`: the dashboard's HTTP server (Node's `http`): the page and its assets, the
 * JSON API, the event stream and the login routes, behind the checks of {@link guard}. It binds
 * 127.0.0.1 unless told otherwise; elsewhere it needs a token, and with a token set every action
 * needs it, even on loopback.
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Broker } from '../broker/index.js';
import { BrokerError, UserInputError } from '../errors.js';
import { ACTIONS, type ActionName, runAction } from './actions.js';
import { type Assets, loadAssets, sendAsset } from './assets.js';
import { DashboardAuth, SESSION_COOKIE, sessionCookie, sessionIdOf } from './auth.js';
import {
  checkHost,
  checkPost,
  errorBody,
  HttpError,
  isLoopback,
  jsonText,
  loopbackHosts,
  readJson,
  SECURITY_HEADERS,
  sendJson,
  sendJsonText,
} from './guard.js';
import { LiveInventory } from './live.js';
import { type PageData, renderPage } from './page.js';
import { EventStreams } from './sse.js';
import { deploymentViews, type HostPage, type HostQuery, hostDetail, hostPage, parseHostQuery } from './views.js';

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** Address to listen on (default 127.0.0.1). Anything but loopback needs a token. */
  host?: string;
  /** Port (default 8040; 0 picks a free one). */
  port?: number;
  /** Require a token on loopback too (one is made if none exists). */
  token?: boolean;
  /** Name of the token made when one is needed and none exists (default: the broker's owner). */
  tokenName?: string;
}

/** A running dashboard. */
export interface Dashboard {
  /** `http://host:port/`. */
  readonly url: string;
  readonly auth: DashboardAuth;
  /** The token made at start (printed once by the CLI), when one was made. */
  readonly newToken?: { name: string; token: string };
  /** A one-time link that signs a browser in as `name`. */
  loginUrl(name: string): string;
  /** Stops serving (the Broker stays open). */
  close(): Promise<void>;
}

/** Starts the dashboard over `broker`'s store. */
export async function startDashboard(broker: Broker, options: DashboardOptions = {}): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  const loopback = isLoopback(host);
  const assets = loadAssets();
  const auth = new DashboardAuth(broker.directory);
  let newToken: Dashboard['newToken'];
  if ((!loopback || options.token) && !auth.enabled) {
    const name = options.tokenName ?? broker.owner;
    newToken = { name, token: await auth.createToken(name) };
  }
  const live = await LiveInventory.open(broker);
  const streams = new EventStreams(live);
  const ctx: RouteContext = { broker, auth, live, streams, assets, readNeedsToken: !loopback, allowedHosts: undefined };
  const server = createServer((req, res) => {
    handle(ctx, req, res).catch((error: unknown) => {
      const { status, body } = errorBody(error);
      if (status >= 500) broker.logger.warn(`dashboard: ${req.method} ${req.url}: ${(error as Error).message}`);
      if (!res.headersSent) sendJson(res, status, body);
      else res.end();
    });
  });
  try {
    await listen(server, options.port ?? 8040, host);
  } catch (error) {
    live.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL' || code === 'EACCES') {
      throw new UserInputError(`cannot listen on ${host}:${options.port ?? 8040} (${code}); pass another --port (0: any free one) or --host.`);
    }
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  if (loopback) ctx.allowedHosts = loopbackHosts(host, port);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  return {
    url,
    auth,
    ...(newToken ? { newToken } : {}),
    loginUrl: (name) => `${url}login?code=${auth.loginCode(name)}`,
    async close() {
      live.close();
      streams.closeAll();
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      done();
    });
  });
}

interface RouteContext {
  broker: Broker;
  auth: DashboardAuth;
  live: LiveInventory;
  streams: EventStreams;
  assets: Assets;
  readNeedsToken: boolean;
  allowedHosts: Set<string> | undefined;
}

const HOST_ROUTE = /^\/api\/hosts\/([^/]+)(?:\/([a-z]+))?$/;

async function handle(ctx: RouteContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkHost(req, ctx.allowedHosts);
  const url = new URL(req.url ?? '/', 'http://dashboard');
  const path = url.pathname;
  const who = ctx.auth.whoIs(req.headers);
  if (req.method === 'GET' || req.method === 'HEAD') {
    const asset = ctx.assets.files.get(path);
    if (asset) return sendAsset(req, res, asset, url);
    if (path === '/') return sendPage(ctx, url, who, req, res);
    if (path === '/login') return login(ctx, url, req, res);
    if (path === '/favicon.ico') return void res.writeHead(204, SECURITY_HEADERS).end();
    if (path === '/api/me') return sendJson(res, 200, me(ctx, who));
    if (ctx.readNeedsToken && !who) throw unauthorized('reading');
    if (path === '/api/events') return ctx.streams.open(req, res, SECURITY_HEADERS);
    if (path === '/api/hosts') return sendJsonText(res, 200, hostsAnswer(ctx, parseHostQuery(url.searchParams)).json);
    if (path === '/api/deployments') return sendJson(res, 200, { deployments: deploymentViews([...ctx.live.deployments.values()], ctx.live.hosts) });
    const m = HOST_ROUTE.exec(path);
    if (m && !m[2]) return sendJson(res, 200, detail(ctx, decodeURIComponent(m[1]!)));
    if (m || path.startsWith('/api/')) throw new HttpError(m ? 405 : 404, m ? 'METHOD_NOT_ALLOWED' : 'NOT_FOUND', `no GET ${path}; actions are POST.`);
    throw new HttpError(404, 'NOT_FOUND', `no page ${path}.`);
  }
  if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not served here; reads are GET, actions POST.`);
  checkPost(req);
  const body = await readJson(req);
  if (path === '/api/login') return apiLogin(ctx, body, req, res);
  if (path === '/api/logout') {
    const session = sessionIdOf(req.headers.cookie);
    if (session) ctx.auth.endSession(session);
    return sendJson(res, 200, { user: null }, { 'set-cookie': `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0` });
  }
  const m = HOST_ROUTE.exec(path);
  if (!m?.[2] || !(ACTIONS as readonly string[]).includes(m[2])) throw new HttpError(404, 'NOT_FOUND', `no action at ${path}; actions: ${ACTIONS.join(', ')}.`);
  if (ctx.auth.enabled && !who) throw unauthorized('actions');
  const record = ctx.live.hosts.get(decodeURIComponent(m[1]!)) ?? (await ctx.broker.find(decodeURIComponent(m[1]!)));
  if (!record) throw new HttpError(404, 'NOT_FOUND', `no host ${JSON.stringify(m[1])} in the inventory (checked in meanwhile?).`);
  let result: Awaited<ReturnType<typeof runAction>> | undefined;
  try {
    result = await runAction(ctx.broker, record, m[2] as ActionName, body, who ?? 'local');
  } finally {
    // Before answering, so the page's next read shows what the action did.
    await ctx.live.refresh([record.id, ...(result?.created ?? []).map((r) => r.id)]);
  }
  sendJson(res, 200, result);
}

/**
 * A page of hosts with the inventory version it shows, as JSON and as the data the page is drawn
 * from (both scrubbed): made once per query until the inventory changes.
 */
function hostsAnswer(ctx: RouteContext, query: HostQuery): { page: HostPage & { version: number }; json: string } {
  return ctx.live.memo(`hosts ${JSON.stringify(query)}`, () => {
    const json = jsonText({ ...hostPage([...ctx.live.hosts.values()], [...ctx.live.deployments.values()], query), version: ctx.live.version });
    return { page: JSON.parse(json), json };
  });
}

/**
 * `GET /`: the page, with the hosts its address asks for already drawn (not when reading needs a
 * sign-in first, nor for the deployments view or a query the API refuses: the page then asks the
 * API, which says what is wrong).
 */
function sendPage(ctx: RouteContext, url: URL, who: string | undefined, req: IncomingMessage, res: ServerResponse): void {
  let page: PageData['page'];
  if ((!ctx.readNeedsToken || who) && (url.searchParams.get('view') ?? 'hosts') === 'hosts') {
    try {
      page = hostsAnswer(ctx, parseHostQuery(url.searchParams)).page;
    } catch (error) {
      if (!(BrokerError.isInstance(error) && error.code === 'USER_INPUT')) throw error;
    }
  }
  const body = renderPage(ctx.assets, { page, me: me(ctx, who) });
  res.writeHead(200, { ...ctx.assets.pageHeaders, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function unauthorized(what: string): HttpError {
  return new HttpError(
    401,
    'UNAUTHORIZED',
    `${what} here need the dashboard token: send \`Authorization: Bearer <token>\`, or sign in with the token or the login link \`hostbroker serve\` printed.`,
  );
}

function me(ctx: RouteContext, who: string | undefined): PageData['me'] {
  const known = who || !ctx.readNeedsToken;
  return {
    user: who ?? null,
    tokenSet: ctx.auth.enabled,
    readNeedsToken: ctx.readNeedsToken,
    canAct: !ctx.auth.enabled || Boolean(who),
    ...(known ? { directory: ctx.broker.directory, owner: ctx.broker.owner } : {}),
  };
}

function detail(ctx: RouteContext, key: string): unknown {
  const hosts = [...ctx.live.hosts.values()];
  const record = ctx.live.hosts.get(key) ?? hosts.find((h) => h.name === key);
  if (!record) throw new HttpError(404, 'NOT_FOUND', `no host ${JSON.stringify(key)} in the inventory (checked in meanwhile?).`);
  const unique = hosts.filter((h) => h.name === record.name).length === 1;
  const defaultDir = resolve(process.env.BROKER_DIRECTORY ?? join(homedir(), '.broker')) === ctx.broker.directory;
  return hostDetail(record, [...ctx.live.deployments.values()], ctx.broker.directory, unique ? record.name : record.id, defaultDir);
}

/** `GET /login?code=...`: uses up a one-time code, sets the session cookie, goes to the page. */
function login(ctx: RouteContext, url: URL, req: IncomingMessage, res: ServerResponse): void {
  const session = ctx.auth.redeem(url.searchParams.get('code') ?? '');
  if (!session)
    throw new HttpError(
      401,
      'UNAUTHORIZED',
      'this login link is unknown, used or older than 10 minutes; sign in with the token on the page, or restart `hostbroker serve` for a new link.',
    );
  res.writeHead(303, { ...SECURITY_HEADERS, location: '/', 'set-cookie': sessionCookie(session, isSecure(req)), 'cache-control': 'no-store' });
  res.end();
}

/** `POST /api/login {token}`: the page's sign-in form. */
function apiLogin(ctx: RouteContext, body: Record<string, unknown>, req: IncomingMessage, res: ServerResponse): void {
  const name = typeof body.token === 'string' ? ctx.auth.identify(body.token.trim()) : undefined;
  if (!name) throw new HttpError(401, 'UNAUTHORIZED', 'that is not a dashboard token; `hostbroker serve --new-token NAME` makes one.');
  sendJson(res, 200, { user: name }, { 'set-cookie': sessionCookie(ctx.auth.startSession(name), isSecure(req)) });
}

/** Behind a TLS proxy the cookie is marked Secure. */
function isSecure(req: IncomingMessage): boolean {
  return req.headers['x-forwarded-proto'] === 'https';
}
