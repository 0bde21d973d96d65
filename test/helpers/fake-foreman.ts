/**
 * A small Foreman server for tests: the REST API v2 endpoints the `foreman` provider uses, with
 * Foreman's shapes (lists as `{total, subtotal, page, per_page, search, results}`, errors as
 * `{"error": {"message": ...}}` or `{"error": {"full_messages": [...]}}`, 404 as `{"message": ...}`,
 * hosts with `build`, `build_status` (0 installed, 1 pending, 2 token expired, 3 failed) and
 * `build_status_label`). Builds are scripted per hostgroup.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { sendJson, readBody, closeServer, listenOnLoopback } from './http-fake.js';

export interface FakeHostgroup {
  id: number;
  name: string;
  title: string;
  domain: string;
  /** Status polls a build stays pending. */
  polls: number;
  /** How the build ends. */
  outcome: 'installed' | 'failed';
}

export interface FakeForemanHost {
  id: number;
  name: string;
  ip: string;
  hostgroup: FakeHostgroup;
  owner: string;
  build: boolean;
  buildStatus: number;
  pollsLeft: number;
  parameters: Array<{ name: string; value: string }>;
  body: Record<string, unknown>;
}

export interface ForemanFault {
  method?: string;
  path: RegExp;
  status: number;
  body?: unknown;
  times?: number;
  drop?: boolean;
}

const LABELS: Record<number, string> = { 0: 'Installed', 1: 'Pending installation', 2: 'Token expired', 3: 'Installation error' };

export class FakeForeman {
  readonly server: Server;
  url = '';
  username = 'jdoe';
  password = 'foreman-pat-0123456789';
  /** The IP every host created through the API gets (e.g. a real test sshd); default 192.0.2.<id>. */
  hostIp: string | undefined;
  readonly hostgroups: FakeHostgroup[] = [];
  readonly hosts = new Map<number, FakeForemanHost>();
  readonly deleted: number[] = [];
  readonly requests: Array<{ method: string; url: string; body?: string; authorization?: string }> = [];
  readonly faults: ForemanFault[] = [];
  /** Users allowed to create hosts. */
  canCreate = true;
  private nextId = 1;

  private constructor() {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => sendJson(res, 500, { error: { message: String(error) } }));
    });
  }

  static async start(): Promise<FakeForeman> {
    const fake = new FakeForeman();
    fake.url = await listenOnLoopback(fake.server);
    return fake;
  }

  async close(): Promise<void> {
    await closeServer(this.server);
  }

  addHostgroup(g: Partial<FakeHostgroup> & { title: string }): FakeHostgroup {
    const group: FakeHostgroup = { id: this.nextId++, name: g.title.split('/').at(-1)!, domain: 'example.test', polls: 1, outcome: 'installed', ...g };
    this.hostgroups.push(group);
    return group;
  }

  /** A host made outside the provider (for sync). */
  addHost(h: { name: string; owner: string; hostgroup: FakeHostgroup; parameters?: Record<string, string> }): FakeForemanHost {
    const id = this.nextId++;
    const host: FakeForemanHost = {
      id,
      name: `${h.name}.${h.hostgroup.domain}`,
      ip: `192.0.2.${id}`,
      hostgroup: h.hostgroup,
      owner: h.owner,
      build: false,
      buildStatus: 0,
      pollsLeft: 0,
      parameters: Object.entries(h.parameters ?? {}).map(([name, value]) => ({ name, value })),
      body: {},
    };
    this.hosts.set(id, host);
    return host;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    const body = await readBody(req);
    this.requests.push({
      method,
      url: url.pathname + url.search,
      ...(body ? { body } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    });
    const fault = this.faults.find((f) => (f.method ?? method) === method && f.path.test(url.pathname) && (f.times ?? 1) > 0);
    if (fault) {
      fault.times = (fault.times ?? 1) - 1;
      if (fault.drop) {
        req.socket.destroy();
        return;
      }
      return sendJson(res, fault.status, fault.body ?? { error: { message: 'Internal Server Error: the server was unable to finish the request.' } });
    }
    const auth = req.headers.authorization ?? '';
    const [user, ...pw] = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString().split(':') : [''];
    if (user !== this.username || pw.join(':') !== this.password) {
      return sendJson(res, 401, { error: { message: `Unable to authenticate user ${user ?? ''}` } });
    }
    const q = url.searchParams;
    let m: RegExpExecArray | null;

    if (method === 'GET' && url.pathname === '/api/hostgroups') {
      let list = this.hostgroups;
      const search = q.get('search');
      const t = search ? /^title = "(.*)"$/.exec(search) : null;
      if (search && !t) return sendJson(res, 400, { error: { message: `Field '${search}' not recognized for searching!` } });
      if (t) list = list.filter((g) => g.title === t[1]);
      return sendJson(
        res,
        200,
        listJson(
          list.map((g) => ({ id: g.id, name: g.name, title: g.title })),
          q,
        ),
      );
    }
    if (method === 'POST' && url.pathname === '/api/hosts') {
      if (!this.canCreate) return sendJson(res, 403, { error: { message: 'Access denied', details: 'Missing one of the required permissions: create_hosts' } });
      const parsed = JSON.parse(body || '{}') as { host?: Record<string, unknown> };
      const h = parsed.host ?? {};
      const group = this.hostgroups.find((g) => g.id === h.hostgroup_id);
      const errors: Record<string, string[]> = {};
      const full: string[] = [];
      if (!group) {
        errors.hostgroup_id = ["can't be blank"];
        full.push("Hostgroup can't be blank");
      }
      const fqdn = `${String(h.name)}.${group?.domain ?? 'example.test'}`;
      if ([...this.hosts.values()].some((x) => x.name === fqdn)) {
        errors.name = ['has already been taken'];
        full.push('Name has already been taken');
      }
      if (full.length) return sendJson(res, 422, { error: { id: null, errors, full_messages: full } });
      const id = this.nextId++;
      const params = (h.host_parameters_attributes as Array<{ name: string; value: string }> | undefined) ?? [];
      const host: FakeForemanHost = {
        id,
        name: fqdn,
        ip: this.hostIp ?? `192.0.2.${id}`,
        hostgroup: group!,
        owner: this.username,
        build: h.build === true,
        buildStatus: h.build === true ? 1 : 0,
        pollsLeft: group!.polls,
        parameters: params,
        body: h,
      };
      this.hosts.set(id, host);
      return sendJson(res, 201, hostJson(host, false));
    }
    if (method === 'GET' && url.pathname === '/api/hosts') {
      let list = [...this.hosts.values()];
      const search = q.get('search') ?? '';
      let s: RegExpExecArray | null;
      if ((s = /^owner = "(.*)"$/.exec(search))) list = list.filter((h) => h.owner === s![1]);
      // Foreman's search_by_params keeps the key after its last dot: params.a.b matches a parameter named b.
      else if ((s = /^params\.(\S+) = "(.*)"$/.exec(search))) {
        const key = s[1]!.replace(/^.*\./, '');
        list = list.filter((h) => h.parameters.some((p) => p.name === key && p.value === s![2]));
      } else if (search) return sendJson(res, 400, { error: { message: `Field '${search}' not recognized for searching!` } });
      const withParams = q.getAll('include[]').includes('parameters');
      return sendJson(
        res,
        200,
        listJson(
          list.map((h) => hostJson(h, withParams)),
          q,
        ),
      );
    }
    if ((m = /^\/api\/hosts\/(\d+)$/.exec(url.pathname))) {
      const host = this.hosts.get(Number(m[1]));
      if (!host) return sendJson(res, 404, { message: `Resource host not found by id '${m[1]}'` });
      if (method === 'GET') {
        this.tick(host);
        return sendJson(res, 200, hostJson(host, true));
      }
      if (method === 'DELETE') {
        this.hosts.delete(host.id);
        this.deleted.push(host.id);
        return sendJson(res, 200, hostJson(host, false));
      }
    }
    return sendJson(res, 404, { message: 'Route not found' });
  }

  private tick(host: FakeForemanHost): void {
    if (!host.build) return;
    if (host.pollsLeft > 0) {
      host.pollsLeft--;
      return;
    }
    if (host.hostgroup.outcome === 'installed') {
      host.build = false;
      host.buildStatus = 0;
    } else host.buildStatus = 3;
  }
}

function hostJson(h: FakeForemanHost, withParams: boolean): Record<string, unknown> {
  return {
    id: h.id,
    name: h.name,
    ip: h.ip,
    build: h.build,
    build_status: h.buildStatus,
    build_status_label: LABELS[h.buildStatus],
    global_status: h.buildStatus >= 2 ? 2 : 0,
    hostgroup_id: h.hostgroup.id,
    hostgroup_name: h.hostgroup.name,
    hostgroup_title: h.hostgroup.title,
    operatingsystem_name: 'RedHat 9.4',
    owner_name: h.owner,
    owner_type: 'User',
    created_at: '2026-01-02 03:04:05 UTC',
    ...(withParams ? { parameters: h.parameters.map((p, i) => ({ id: i + 1, name: p.name, value: p.value, parameter_type: 'string', priority: 70 })) } : {}),
  };
}

/** Foreman's list answer with `page`/`per_page`. */
function listJson(items: unknown[], q: URLSearchParams): Record<string, unknown> {
  const perPage = Number(q.get('per_page') ?? 20);
  const page = Number(q.get('page') ?? 1);
  return {
    total: items.length,
    subtotal: items.length,
    page,
    per_page: perPage,
    search: q.get('search'),
    sort: { by: null, order: null },
    results: items.slice((page - 1) * perPage, page * perPage),
  };
}
