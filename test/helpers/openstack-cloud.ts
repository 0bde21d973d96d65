/**
 * A small OpenStack cloud for tests: one node:http server on 127.0.0.1 that answers the documented
 * Keystone v3, Nova (v2.1), Glance (v2) and Neutron (v2.0) calls hostbroker makes, with the
 * services' own response and error shapes. Servers go BUILD → ACTIVE (or ERROR with a fault)
 * after a few polls; quotas, token expiry/revocation and injected failures are under test control.
 */
import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type Server as HttpServer, type ServerResponse, createServer } from 'node:http';
import { sendJson, closeServer, listenOnLoopback } from './http-fake.js';

export interface FakeUser {
  name: string;
  password: string;
  domain: string;
}

export interface FakeCloudOptions {
  /** Lifetime of issued tokens, by the fake's clock. */
  tokenTtlMs?: number;
  /** GETs a new server answers with BUILD before it settles. */
  buildPolls?: number;
  /** Absolute limits (-1 = unlimited). */
  limits?: { instances?: number; cores?: number; ram?: number };
  /** Most servers in one page of /servers/detail. */
  pageSize?: number;
  /** The clock (ms) used for token expiry; share it with the provider to move time. */
  now?: () => number;
  /**
   * Checks tokens elsewhere, as keystonemiddleware does against a real Keystone (true = valid);
   * the fake's own tokens are then not consulted.
   */
  validateToken?: (token: string) => Promise<boolean>;
  /** The fixed address every server gets (e.g. a real test sshd); default 10.0.0.<n>. */
  serverIp?: string;
}

export interface FakeServer {
  id: string;
  name: string;
  status: 'BUILD' | 'ACTIVE' | 'ERROR';
  polls: number;
  /** Fault to go to ERROR with, decided at creation. */
  plannedFault: string | undefined;
  body: Record<string, unknown>;
  metadata: Record<string, string>;
  created: string;
  addresses: Record<string, { addr: string; version: number; 'OS-EXT-IPS:type': string }[]>;
  flavor: { vcpus: number; ram: number };
}

interface Failure {
  method: string;
  path: RegExp;
  status: number;
  body: unknown;
  times: number;
  /** Handle the request normally, then answer with the failure anyway (a POST that was done). */
  afterProcessing: boolean;
  /** Wait this long before answering. */
  delayMs: number;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  token: string | undefined;
  body: unknown;
}

export const PROJECT_ID = '4b6e1a0f7a6c4f4e9b1d2c3e4f5a6b7c';
export const IMAGES = [
  { id: '0b2c0e6a-3b0e-4c38-9d7e-8f1a2b3c4d5e', name: 'cirros-0.6.2', status: 'active', visibility: 'public' },
  { id: '6d8f2a7c-1e3b-4f5a-8c9d-0e1f2a3b4c5d', name: 'Fedora-Cloud-Base-40', status: 'active', visibility: 'public' },
  { id: '1a1a1a1a-2b2b-4c4c-8d8d-9e9e9e9e9e9e', name: 'twin', status: 'active', visibility: 'public' },
  { id: '2a2a2a2a-2b2b-4c4c-8d8d-9e9e9e9e9e9e', name: 'twin', status: 'active', visibility: 'public' },
];
export const FLAVORS = [
  { id: '1', name: 'm1.tiny', vcpus: 1, ram: 512, disk: 1 },
  { id: '2', name: 'm1.small', vcpus: 1, ram: 2048, disk: 20 },
  { id: '3', name: 'm1.medium', vcpus: 2, ram: 4096, disk: 40 },
];
export const NETWORKS = [
  { id: '7e1d8a4c-0b3f-4a2d-9c5e-6f7a8b9c0d1e', name: 'private', 'router:external': false, status: 'ACTIVE', subnets: [] },
  { id: '9f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b', name: 'public', 'router:external': true, status: 'ACTIVE', subnets: [] },
];

const UNAUTHORIZED = { error: { code: 401, message: 'The request you have made requires authentication.', title: 'Unauthorized' } };

/** A fake cloud; `await FakeOpenStack.start()`, then `close()`. */
export class FakeOpenStack {
  readonly users: FakeUser[] = [{ name: 'demo', password: 'pa55-Word-demo', domain: 'Default' }];
  readonly appCredentials = new Map<string, string>([['ac-1234', 'app-cred-SECRET-value']]);
  readonly servers = new Map<string, FakeServer>();
  /** Ids of servers deleted, in order. */
  readonly deleted: string[] = [];
  readonly floatingIps = new Map<
    string,
    { id: string; floating_ip_address: string; floating_network_id: string; port_id: string | null; description: string; status: string }
  >();
  readonly keypairs = new Map<string, string>();
  readonly requests: RequestLogEntry[] = [];
  /** Next servers created go to ERROR with these fault messages, one each. */
  readonly errorFaults: string[] = [];
  limits: { instances: number; cores: number; ram: number };
  tokenTtlMs: number;
  buildPolls: number;
  pageSize: number;
  now: () => number;
  private readonly validateToken: ((token: string) => Promise<boolean>) | undefined;
  private readonly serverIp: string | undefined;
  private readonly tokens = new Map<string, number>();
  private readonly failures: Failure[] = [];
  private http!: HttpServer;
  private ipCounter = 10;
  private fipCounter = 100;
  url = '';

  private constructor(options: FakeCloudOptions) {
    this.tokenTtlMs = options.tokenTtlMs ?? 3600_000;
    this.buildPolls = options.buildPolls ?? 1;
    this.pageSize = options.pageSize ?? 1000;
    this.now = options.now ?? Date.now;
    this.validateToken = options.validateToken;
    this.serverIp = options.serverIp;
    this.limits = { instances: options.limits?.instances ?? 10, cores: options.limits?.cores ?? 20, ram: options.limits?.ram ?? 51200 };
  }

  static async start(options: FakeCloudOptions = {}): Promise<FakeOpenStack> {
    const cloud = new FakeOpenStack(options);
    cloud.http = createServer((req, res) => {
      cloud.handle(req, res).catch((error: unknown) => sendJson(res, 500, { computeFault: { code: 500, message: String(error) } }));
    });
    cloud.url = await listenOnLoopback(cloud.http);
    return cloud;
  }

  get authUrl(): string {
    return `${this.url}/identity/v3`;
  }

  get computeUrl(): string {
    return `${this.url}/compute/v2.1/${PROJECT_ID}`;
  }

  /** Token requests received. */
  get authCount(): number {
    return this.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/auth/tokens')).length;
  }

  /** Requests to a path (regex on `METHOD path`). */
  count(pattern: RegExp): number {
    return this.requests.filter((r) => pattern.test(`${r.method} ${r.path}`)).length;
  }

  /** Makes every issued token invalid (services answer 401). */
  revokeTokens(): void {
    this.tokens.clear();
  }

  /** The next `times` requests matching method and path fail with `status` and `body`. */
  failNext(method: string, path: RegExp, status: number, body: unknown, options: { times?: number; afterProcessing?: boolean; delayMs?: number } = {}): void {
    this.failures.push({
      method,
      path,
      status,
      body,
      times: options.times ?? 1,
      afterProcessing: options.afterProcessing ?? false,
      delayMs: options.delayMs ?? 0,
    });
  }

  /** The next request matching method and path is handled at once but answered only after `ms`. */
  delayNext(method: string, path: RegExp, ms: number): void {
    this.failures.push({ method, path, status: 0, body: undefined, times: 1, afterProcessing: true, delayMs: ms });
  }

  async close(): Promise<void> {
    await closeServer(this.http);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body: unknown = text ? JSON.parse(text) : undefined;
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const token = req.headers['x-auth-token'] as string | undefined;
    this.requests.push({ method, path: path + url.search, token, body });

    const failure = this.failures.find((f) => f.method === method && f.path.test(path) && f.times > 0);
    if (failure) {
      failure.times--;
      if (!failure.afterProcessing) return sendJson(res, failure.status, failure.body);
      if (failure.status === 0) {
        // Only a delay: the real answer, late.
        const held = { status: 0, headers: {} as Record<string, string>, body: '' };
        const sink = {
          set statusCode(v: number) {
            held.status = v;
          },
          setHeader(k: string, v: string) {
            held.headers[k] = v;
          },
          end(b?: string) {
            held.body = b ?? '';
          },
        } as unknown as ServerResponse;
        await this.route(method, path, url.searchParams, body, sink);
        await new Promise((r) => setTimeout(r, failure.delayMs));
        if (res.destroyed) return;
        res.statusCode = held.status;
        for (const [k, v] of Object.entries(held.headers)) res.setHeader(k, v);
        return void res.end(held.body);
      }
      const sink = { statusCode: 0, setHeader() {}, end() {} } as unknown as ServerResponse;
      await this.route(method, path, url.searchParams, body, sink);
      return sendJson(res, failure.status, failure.body);
    }

    if (path === '/identity/v3/auth/tokens' && method === 'POST') return this.issueToken(body, res);
    if (this.validateToken) {
      if (!token || !(await this.validateToken(token))) return sendJson(res, 401, UNAUTHORIZED);
    } else if (!token || !this.tokens.has(token) || this.tokens.get(token)! <= this.now()) return sendJson(res, 401, UNAUTHORIZED);
    return this.route(method, path, url.searchParams, body, res);
  }

  private issueToken(body: unknown, res: ServerResponse): void {
    const identity = (body as { auth?: { identity?: Record<string, unknown> } })?.auth?.identity as
      | {
          methods: string[];
          password?: { user: { name?: string; password?: string; domain?: { name?: string; id?: string } } };
          application_credential?: { id?: string; secret?: string };
        }
      | undefined;
    let ok = false;
    if (identity?.methods?.[0] === 'password') {
      const u = identity.password?.user;
      const domainOk = (d?: { name?: string; id?: string }) => d?.name === 'Default' || d?.id === 'default';
      ok = this.users.some((x) => x.name === u?.name && x.password === u?.password && domainOk(u?.domain));
    } else if (identity?.methods?.[0] === 'application_credential') {
      const c = identity.application_credential;
      ok = !!c?.id && this.appCredentials.get(c.id) === c.secret;
    }
    if (!ok) return sendJson(res, 401, UNAUTHORIZED);
    const value = `gAAAAA${randomUUID().replace(/-/g, '')}`;
    const expires = this.now() + this.tokenTtlMs;
    this.tokens.set(value, expires);
    const ep = (url: string, iface = 'public') => ({ id: randomUUID(), interface: iface, region: 'RegionOne', region_id: 'RegionOne', url });
    const catalog = [
      { type: 'identity', name: 'keystone', endpoints: [ep(`${this.url}/identity`)] },
      { type: 'compute', name: 'nova', endpoints: [ep(this.computeUrl), ep('http://127.0.0.1:9/internal-nova', 'internal')] },
      { type: 'image', name: 'glance', endpoints: [ep(`${this.url}/image`)] },
      { type: 'network', name: 'neutron', endpoints: [ep(`${this.url}/network`)] },
    ];
    res.setHeader('X-Subject-Token', value);
    sendJson(res, 201, {
      token: {
        methods: [identity!.methods[0]],
        expires_at: new Date(expires).toISOString().replace('Z', '000Z'),
        issued_at: new Date(this.now()).toISOString(),
        project: { id: PROJECT_ID, name: 'demo', domain: { id: 'default', name: 'Default' } },
        user: { id: 'u-1', name: 'demo', domain: { id: 'default', name: 'Default' } },
        catalog,
      },
    });
  }

  private async route(method: string, path: string, query: URLSearchParams, body: unknown, res: ServerResponse): Promise<void> {
    const compute = `/compute/v2.1/${PROJECT_ID}`;
    if (path.startsWith(compute)) return this.nova(method, path.slice(compute.length), query, body, res);
    if (path.startsWith('/image/v2/')) return this.glance(method, path.slice('/image/v2'.length), query, res);
    if (path.startsWith('/network/v2.0/')) return this.neutron(method, path.slice('/network/v2.0'.length), query, body, res);
    sendJson(res, 404, { error: { code: 404, message: `no route ${path}` } });
  }

  // ---- Nova ----

  private nova(method: string, path: string, query: URLSearchParams, body: unknown, res: ServerResponse): void {
    const notFound = (what: string) => sendJson(res, 404, { itemNotFound: { code: 404, message: what } });
    if (path === '/servers' && method === 'POST') return this.createServer(body, res);
    if (path === '/servers/detail' && method === 'GET') {
      const all = [...this.servers.values()].sort((a, b) => a.id.localeCompare(b.id));
      const marker = query.get('marker');
      const start = marker ? all.findIndex((s) => s.id === marker) + 1 : 0;
      const limit = Math.min(Number(query.get('limit') ?? this.pageSize), this.pageSize);
      const page = all.slice(start, start + limit);
      const out: Record<string, unknown> = { servers: page.map((s) => this.view(s)) };
      if (page.length === limit && start + limit < all.length) {
        out.servers_links = [{ rel: 'next', href: `${this.computeUrl}/servers/detail?limit=${limit}&marker=${page.at(-1)!.id}` }];
      }
      return sendJson(res, 200, out);
    }
    const meta = /^\/servers\/([^/]+)\/metadata$/.exec(path);
    if (meta && method === 'POST') {
      const s = this.servers.get(meta[1]!);
      if (!s) return notFound(`Instance ${meta[1]} could not be found.`);
      Object.assign(s.metadata, (body as { metadata: Record<string, string> }).metadata);
      return sendJson(res, 200, { metadata: s.metadata });
    }
    const one = /^\/servers\/([^/]+)$/.exec(path);
    if (one) {
      const s = this.servers.get(one[1]!);
      if (!s) return notFound(`Instance ${one[1]} could not be found.`);
      if (method === 'GET') {
        this.advance(s);
        return sendJson(res, 200, { server: this.view(s) });
      }
      if (method === 'DELETE') {
        this.servers.delete(s.id);
        this.deleted.push(s.id);
        for (const f of this.floatingIps.values()) if (f.port_id === `port-${s.id}`) f.port_id = null;
        return sendJson(res, 204, undefined);
      }
    }
    if (path === '/flavors/detail' && method === 'GET') return sendJson(res, 200, { flavors: FLAVORS });
    if (path === '/limits' && method === 'GET') {
      const live = [...this.servers.values()];
      return sendJson(res, 200, {
        limits: {
          rate: [],
          absolute: {
            maxTotalInstances: this.limits.instances,
            totalInstancesUsed: live.length,
            maxTotalCores: this.limits.cores,
            totalCoresUsed: live.reduce((n, s) => n + s.flavor.vcpus, 0),
            maxTotalRAMSize: this.limits.ram,
            totalRAMUsed: live.reduce((n, s) => n + s.flavor.ram, 0),
            maxServerMeta: 128,
            maxTotalKeypairs: 100,
          },
        },
      });
    }
    const kp = /^\/os-keypairs\/([^/]+)$/.exec(path);
    if (kp && method === 'GET') {
      const name = decodeURIComponent(kp[1]!);
      const key = this.keypairs.get(name);
      return key ? sendJson(res, 200, { keypair: { name, public_key: key, fingerprint: 'aa:bb' } }) : notFound(`Keypair ${name} not found for user u-1`);
    }
    if (path === '/os-keypairs' && method === 'POST') {
      const k = (body as { keypair: { name: string; public_key: string } }).keypair;
      if (this.keypairs.has(k.name)) return sendJson(res, 409, { conflictingRequest: { code: 409, message: `Key pair '${k.name}' already exists.` } });
      this.keypairs.set(k.name, k.public_key);
      return sendJson(res, 200, { keypair: { name: k.name, public_key: k.public_key, fingerprint: 'aa:bb', user_id: 'u-1' } });
    }
    notFound(`no route ${method} ${path}`);
  }

  private createServer(body: unknown, res: ServerResponse): void {
    const b = (body as { server?: Record<string, unknown> })?.server;
    if (!b || typeof b.name !== 'string' || typeof b.imageRef !== 'string' || typeof b.flavorRef !== 'string') {
      return sendJson(res, 400, { badRequest: { code: 400, message: "Invalid input for field/attribute server. Value: None. 'name' is a required property" } });
    }
    const flavor = FLAVORS.find((f) => f.id === b.flavorRef);
    if (!flavor) return sendJson(res, 400, { badRequest: { code: 400, message: `Flavor ${b.flavorRef} could not be found.` } });
    if (!IMAGES.some((i) => i.id === b.imageRef)) return sendJson(res, 400, { badRequest: { code: 400, message: `Image ${b.imageRef} could not be found.` } });
    const live = [...this.servers.values()];
    const usedCores = live.reduce((n, s) => n + s.flavor.vcpus, 0);
    const usedRam = live.reduce((n, s) => n + s.flavor.ram, 0);
    const over =
      this.limits.instances >= 0 && live.length + 1 > this.limits.instances
        ? `instances: Requested 1, but already used ${live.length} of ${this.limits.instances} instances`
        : this.limits.cores >= 0 && usedCores + flavor.vcpus > this.limits.cores
          ? `cores: Requested ${flavor.vcpus}, but already used ${usedCores} of ${this.limits.cores} cores`
          : this.limits.ram >= 0 && usedRam + flavor.ram > this.limits.ram
            ? `ram: Requested ${flavor.ram}, but already used ${usedRam} of ${this.limits.ram} ram`
            : undefined;
    if (over) return sendJson(res, 403, { forbidden: { code: 403, message: `Quota exceeded for ${over}` } });
    if (b.key_name && !this.keypairs.has(b.key_name as string)) {
      return sendJson(res, 400, { badRequest: { code: 400, message: `Invalid key_name provided.` } });
    }
    const id = randomUUID();
    this.servers.set(id, {
      id,
      name: b.name,
      status: 'BUILD',
      polls: 0,
      plannedFault: this.errorFaults.shift(),
      body: b,
      metadata: { ...((b.metadata as Record<string, string>) ?? {}) },
      created: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      addresses: {},
      flavor,
    });
    sendJson(res, 202, {
      server: {
        id,
        links: [{ rel: 'self', href: `${this.computeUrl}/servers/${id}` }],
        'OS-DCF:diskConfig': 'MANUAL',
        security_groups: [{ name: 'default' }],
        adminPass: 'AdminPass-Do-Not-Leak-42',
      },
    });
  }

  private advance(s: FakeServer): void {
    if (s.status !== 'BUILD' || ++s.polls < this.buildPolls) return;
    if (s.plannedFault) {
      s.status = 'ERROR';
      return;
    }
    s.status = 'ACTIVE';
    const nets = (s.body.networks as { uuid: string }[] | undefined) ?? [{ uuid: NETWORKS[0]!.id }];
    for (const n of nets) {
      const name = NETWORKS.find((x) => x.id === n.uuid)?.name ?? n.uuid;
      (s.addresses[name] ??= []).push({ addr: this.serverIp ?? `10.0.0.${this.ipCounter++}`, version: 4, 'OS-EXT-IPS:type': 'fixed' });
    }
  }

  private view(s: FakeServer): Record<string, unknown> {
    const addresses = structuredClone(s.addresses);
    for (const f of this.floatingIps.values()) {
      if (f.port_id === `port-${s.id}`) {
        const first = Object.keys(addresses)[0];
        if (first) addresses[first]!.push({ addr: f.floating_ip_address, version: 4, 'OS-EXT-IPS:type': 'floating' });
      }
    }
    const view: Record<string, unknown> = {
      id: s.id,
      name: s.name,
      status: s.status,
      tenant_id: PROJECT_ID,
      user_id: 'u-1',
      metadata: s.metadata,
      addresses,
      created: s.created,
      updated: s.created,
      key_name: s.body.key_name ?? null,
      accessIPv4: '',
      accessIPv6: '',
      flavor: { id: FLAVORS.find((f) => f.vcpus === s.flavor.vcpus && f.ram === s.flavor.ram)?.id, links: [] },
      image: { id: s.body.imageRef, links: [] },
      config_drive: s.body.config_drive ? 'True' : '',
      'OS-EXT-STS:vm_state': s.status.toLowerCase(),
    };
    if (s.status === 'ERROR') view.fault = { code: 500, created: s.created, message: s.plannedFault };
    return view;
  }

  // ---- Glance ----

  private glance(method: string, path: string, query: URLSearchParams, res: ServerResponse): void {
    if (path === '/images' && method === 'GET') {
      let images = IMAGES;
      const name = query.get('name');
      if (name) images = images.filter((i) => i.name === name);
      const status = query.get('status');
      if (status) images = images.filter((i) => i.status === status);
      return sendJson(res, 200, { images, first: '/v2/images', schema: '/v2/schemas/images' });
    }
    const one = /^\/images\/([^/]+)$/.exec(path);
    if (one && method === 'GET') {
      const image = IMAGES.find((i) => i.id === one[1]);
      if (image) return sendJson(res, 200, image);
      return sendText(res, 404, `404 Not Found\n\nNo image found with ID ${one[1]}\n\n   `);
    }
    sendText(res, 404, '404 Not Found\n\nThe resource could not be found.\n\n   ');
  }

  // ---- Neutron ----

  private neutron(method: string, path: string, query: URLSearchParams, body: unknown, res: ServerResponse): void {
    if (path === '/networks' && method === 'GET') {
      let nets = NETWORKS;
      for (const key of ['name', 'id', 'router:external'] as const) {
        const v = query.get(key);
        if (v !== null) nets = nets.filter((n) => String(n[key]) === v);
      }
      return sendJson(res, 200, { networks: nets });
    }
    if (path === '/ports' && method === 'GET') {
      const device = query.get('device_id');
      const server = device ? this.servers.get(device) : undefined;
      const ports = server
        ? Object.entries(server.addresses).map(([net, addrs]) => ({
            id: `port-${server.id}`,
            device_id: server.id,
            network_id: NETWORKS.find((n) => n.name === net)?.id ?? net,
            fixed_ips: addrs.filter((a) => a['OS-EXT-IPS:type'] === 'fixed').map((a) => ({ ip_address: a.addr, subnet_id: 'sub-1' })),
          }))
        : [];
      return sendJson(res, 200, { ports });
    }
    if (path === '/floatingips' && method === 'GET') {
      let fips = [...this.floatingIps.values()];
      const d = query.get('description');
      if (d !== null) fips = fips.filter((f) => f.description === d);
      return sendJson(res, 200, { floatingips: fips });
    }
    if (path === '/floatingips' && method === 'POST') {
      const f = (body as { floatingip: { floating_network_id: string; port_id?: string; description?: string } }).floatingip;
      if (!NETWORKS.some((n) => n.id === f.floating_network_id && n['router:external'])) {
        return sendJson(res, 404, {
          NeutronError: { type: 'ExternalGatewayForFloatingIPNotFound', message: `External network ${f.floating_network_id} is not reachable.`, detail: '' },
        });
      }
      const fip = {
        id: randomUUID(),
        floating_ip_address: `172.24.4.${this.fipCounter++}`,
        floating_network_id: f.floating_network_id,
        port_id: f.port_id ?? null,
        description: f.description ?? '',
        status: 'DOWN',
      };
      this.floatingIps.set(fip.id, fip);
      return sendJson(res, 201, { floatingip: fip });
    }
    const one = /^\/floatingips\/([^/]+)$/.exec(path);
    if (one && method === 'DELETE') {
      if (!this.floatingIps.delete(one[1]!)) {
        return sendJson(res, 404, { NeutronError: { type: 'FloatingIPNotFound', message: `Floating IP ${one[1]} could not be found`, detail: '' } });
      }
      return sendJson(res, 204, undefined);
    }
    sendJson(res, 404, { NeutronError: { type: 'HTTPNotFound', message: 'The resource could not be found.', detail: '' } });
  }
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=UTF-8');
  res.end(text);
}
