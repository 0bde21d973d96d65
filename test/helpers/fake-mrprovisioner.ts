/**
 * A small in-process mr-provisioner server (REST API v1) for tests. It follows the documented API
 * (`/api/v1/docs`, the server's `api_v1` blueprint): Bearer-token auth with an empty 401,
 * `{ error_type, errors: [...] }` error bodies, machine reservation by query, machine updates,
 * state/power changes, assignees (`self`), images (multipart upload with metadata in `q`) and
 * preseeds. Query matching supports `key=value` terms joined by spaces or `&` (a subset of the
 * real server's query language), matched against machine attributes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AnyProviderDefinition, CheckoutTarget, HostContext, InstanceOf, ProviderContext } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { type TestContext, testContext, testHostContext } from '../../lib/testing/index.js';
import { sendJson, closeServer, listenOnLoopback } from './http-fake.js';

export interface FakeMachine {
  id: number;
  name: string;
  hostname: string | null;
  /** Attributes the reservation query matches, e.g. `{ arch: 'aarch64' }`. */
  attrs: Record<string, string>;
  bmc: boolean;
  kernel_id: number | null;
  initrd_id: number | null;
  preseed_id: number | null;
  kernel_opts: string;
  netboot_enabled: boolean;
  state: string;
  power: string;
  interfaces: { id: number; mac: string; lease_ipv4: string | null; configured_ipv4: string | null }[];
  assignments: { id: number; user: string; reason: string | null }[];
}

export interface FakeImage {
  id: number;
  name: string;
  description: string | null;
  type: string;
  user: string;
  known_good: boolean;
  public: boolean;
  upload_date: string;
  content?: Buffer;
}

interface Fault {
  method: string;
  path: RegExp;
  status: number;
  body?: string;
  times: number;
}

/** What a test can see and change on the fake server. */
export class FakeMrProvisioner {
  readonly tokens = new Map<string, string>();
  readonly machines: FakeMachine[] = [];
  readonly images: FakeImage[] = [];
  readonly preseeds: { id: number; name: string; description: string | null; type: string; user: string; content: string }[] = [];
  /** Every request: method, path, and the raw Authorization header. */
  readonly requests: { method: string; path: string; authorization?: string; body?: string }[] = [];
  /** Paths whose answer is replaced by a malformed body (wrong shape, still 200). */
  readonly malformed: RegExp[] = [];
  private readonly faults: Fault[] = [];
  private nextId = 1000;
  private server!: Server;
  url = '';

  /** Adds a machine; returns it for further tweaks. */
  addMachine(m: Partial<FakeMachine> & { name: string }): FakeMachine {
    const id = m.id ?? this.nextId++;
    const machine: FakeMachine = {
      id,
      hostname: `${m.name}.lab.example`,
      attrs: {},
      bmc: true,
      kernel_id: null,
      initrd_id: null,
      preseed_id: null,
      kernel_opts: '',
      netboot_enabled: false,
      state: 'unknown',
      power: 'off',
      interfaces: [{ id: id * 10, mac: '52:54:00:00:00:01', lease_ipv4: `10.0.0.${(id % 250) + 1}`, configured_ipv4: null }],
      assignments: [],
      ...m,
    };
    this.machines.push(machine);
    return machine;
  }

  addImage(i: Partial<FakeImage> & { name: string; type: string; user: string }): FakeImage {
    const image: FakeImage = { id: this.nextId++, description: null, known_good: false, public: false, upload_date: new Date().toISOString(), ...i };
    this.images.push(image);
    return image;
  }

  /** Answers the next `times` requests matching method+path with `status` (and `body`). */
  fail(method: string, path: RegExp, status: number, body?: unknown, times = 1): void {
    this.faults.push({ method, path, status, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body), times });
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          this.handle(req, res, Buffer.concat(chunks));
        } catch (error) {
          sendJson(res, 500, { error_type: 'InternalError', errors: [String(error)] });
        }
      });
    });
    this.url = `${await listenOnLoopback(this.server)}/api/v1`;
    return this;
  }

  async stop(): Promise<void> {
    await closeServer(this.server);
  }

  private handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const path = url.pathname.replace(/^\/api\/v1/, '');
    const text = raw.toString('utf8');
    this.requests.push({ method, path, authorization: req.headers.authorization, body: text });

    const fault = this.faults.find((f) => f.method === method && f.path.test(path) && f.times > 0);
    if (fault) {
      fault.times--;
      res.writeHead(fault.status, { 'Content-Type': 'application/json' });
      res.end(fault.body ?? '');
      return;
    }
    const user = this.tokens.get((req.headers.authorization ?? '').replace('Bearer ', ''));
    if (!user) {
      res.writeHead(401);
      res.end();
      return;
    }
    if (this.malformed.some((r) => r.test(path))) {
      sendJson(res, 200, { unexpected: true });
      return;
    }
    const json = (): Record<string, unknown> => (text ? (JSON.parse(text) as Record<string, unknown>) : {});
    const invalid = (message: string, status = 400) => sendJson(res, status, { error_type: 'InvalidUsage', errors: [message] });
    const m = (re: RegExp) => re.exec(path);
    let match: RegExpExecArray | null;

    if (method === 'GET' && path === '/machine') {
      const all = url.searchParams.get('show_all') === 'true';
      const list = this.machines.filter((x) => all || x.assignments.some((a) => a.user === user));
      return sendJson(res, 200, list.map(serializeMachine));
    }
    if (method === 'POST' && path === '/machine/reservation') {
      const data = json();
      if (!('query' in data)) return sendJson(res, 400, { error_type: 'SchemaError', errors: ["Missing key: 'query'"] });
      const reason = (data.reason as string | null | undefined) ?? null;
      if (reason && reason.length > 140) return sendJson(res, 400, { error_type: 'SchemaError', errors: ['reason too long'] });
      const free = this.machines.find((x) => x.assignments.length === 0 && matches(x, data.query as string | null));
      if (!free) return invalid('no matching machine', 404);
      free.assignments.push({ id: this.nextId++, user, reason });
      return sendJson(res, 200, serializeMachine(free));
    }
    if ((match = m(/^\/machine\/(\d+)(\/.*)?$/))) {
      const machine = this.machines.find((x) => x.id === Number(match![1]));
      if (!machine) return invalid('machine not found', 404);
      const rest = match[2] ?? '';
      const mine = machine.assignments.find((a) => a.user === user);
      if (rest === '' && method === 'GET') return sendJson(res, 200, serializeMachine(machine));
      if (rest === '' && method === 'PUT') {
        if (!mine) return invalid('Forbidden', 403);
        const data = json();
        for (const key of ['kernel_id', 'initrd_id'] as const) {
          if (key in data) {
            const image = this.images.find((i) => i.id === Number(data[key]));
            if (!image) return invalid(`no such ${key === 'kernel_id' ? 'kernel' : 'initrd'}`);
            if (image.type !== (key === 'kernel_id' ? 'Kernel' : 'Initrd'))
              return invalid(`${key === 'kernel_id' ? 'kernel is not a kernel' : 'initrd is not an initrd'}`);
            machine[key] = image.id;
          }
        }
        if ('preseed_id' in data) {
          if (!this.preseeds.some((p) => p.id === Number(data.preseed_id))) return invalid('no such preseed');
          machine.preseed_id = Number(data.preseed_id);
        }
        if ('kernel_opts' in data) machine.kernel_opts = String(data.kernel_opts);
        if ('netboot_enabled' in data) machine.netboot_enabled = Boolean(data.netboot_enabled);
        return sendJson(res, 200, serializeMachine(machine));
      }
      if (rest === '/interface' && method === 'GET') return sendJson(res, 200, machine.interfaces);
      if (rest === '/state' && method === 'GET') return sendJson(res, 200, { state: machine.state });
      if (rest === '/state' && method === 'POST') {
        if (!mine) return sendJson(res, 403, '');
        if (json().state !== 'provision') return sendJson(res, 400, '');
        if (!machine.bmc) return invalid('provisioning requires a BMC');
        if (machine.kernel_id === null) return invalid('provisioning requires a kernel');
        machine.netboot_enabled = true;
        machine.state = 'provisioning';
        machine.power = 'pxe_reboot';
        return sendJson(res, 202, { state: machine.state });
      }
      if (rest === '/power' && method === 'GET') return sendJson(res, 200, { state: machine.power });
      if (rest === '/power' && method === 'POST') {
        const state = json().state as string;
        if (!['on', 'off', 'reboot', 'pxe_reboot', 'bios_reboot', 'disk_reboot'].includes(state))
          return sendJson(res, 400, { error_type: 'SchemaError', errors: ['bad state'] });
        if (!mine) return sendJson(res, 403, '');
        if (!machine.bmc) return invalid('power state changes require a BMC');
        machine.power = state;
        // machine_power_post answers the power state it set.
        return sendJson(res, 202, { state: machine.power });
      }
      if ((match = /^\/assignee\/(self|\d+)$/.exec(rest))) {
        const assignee = match[1] === 'self' ? mine : machine.assignments.find((a) => a.id === Number(match![1]));
        if (!assignee) return invalid('assignee not found', 404);
        if (method === 'GET') return sendJson(res, 200, assignee);
        if (method === 'DELETE') {
          if (assignee.user !== user) return invalid('Forbidden', 403);
          machine.assignments.splice(machine.assignments.indexOf(assignee), 1);
          return sendJson(res, 204, '');
        }
      }
    }
    if (method === 'GET' && path === '/image') {
      const all = url.searchParams.get('show_all') === 'true';
      return sendJson(
        res,
        200,
        this.images.filter((i) => i.user === user || (all && i.public)).map(({ content: _c, ...i }) => i),
      );
    }
    if (method === 'POST' && path === '/image') {
      const parts = parseMultipart(raw, String(req.headers['content-type'] ?? ''));
      const q = parts.find((p) => p.name === 'q');
      const file = parts.find((p) => p.name === 'file');
      if (!q) return invalid('multipart `q` is required');
      const meta = JSON.parse(q.data.toString('utf8')) as Record<string, unknown>;
      if (!file) return invalid('multipart `file` is required');
      if (!['Kernel', 'Initrd', 'bootloader'].includes(String(meta.type))) return sendJson(res, 400, { error_type: 'SchemaError', errors: ['bad type'] });
      const image = this.addImage({
        name: `${user}/${file.filename ?? 'upload'}.${Math.random().toString(16).slice(2, 10).padEnd(8, '0')}`,
        type: String(meta.type),
        user,
        description: (meta.description as string | undefined) ?? null,
        public: Boolean(meta.public),
        known_good: Boolean(meta.known_good),
        content: file.data,
      });
      const { content: _c, ...out } = image;
      return sendJson(res, 201, out);
    }
    if (method === 'GET' && path === '/preseed') {
      return sendJson(
        res,
        200,
        this.preseeds.map(({ content, ...p }) => ({ ...p, content, known_good: false, public: true })),
      );
    }
    return sendJson(res, 404, { error_type: 'NotFound', errors: ['404: Not Found'] });
  }
}

function serializeMachine(m: FakeMachine) {
  return {
    id: m.id,
    name: m.name,
    hostname: m.hostname,
    kernel_id: m.kernel_id,
    kernel_opts: m.kernel_opts,
    initrd_id: m.initrd_id,
    preseed_id: m.preseed_id,
    netboot_enabled: m.netboot_enabled,
  };
}

function matches(machine: FakeMachine, query: string | null): boolean {
  if (!query) return true;
  return query
    .split(/[\s&]+/)
    .filter(Boolean)
    .every((term) => {
      const [k, v] = term.split('=');
      return k === 'name' ? machine.name === v : machine.attrs[k!] === v;
    });
}

function parseMultipart(raw: Buffer, contentType: string): { name: string; filename?: string; data: Buffer }[] {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!boundary) return [];
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const parts: { name: string; filename?: string; data: Buffer }[] = [];
  let start = raw.indexOf(delimiter);
  while (start >= 0) {
    const next = raw.indexOf(delimiter, start + delimiter.length);
    if (next < 0) break;
    const part = raw.subarray(start + delimiter.length + 2, next - 2); // skip CRLF after delimiter, before next
    const headerEnd = part.indexOf('\r\n\r\n');
    const headers = part.subarray(0, headerEnd).toString('utf8');
    const name = /name="([^"]*)"/.exec(headers)?.[1] ?? '';
    const filename = /filename="([^"]*)"/.exec(headers)?.[1];
    parts.push({ name, filename, data: part.subarray(headerEnd + 4) });
    start = next;
  }
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Contexts for calling a provider implementation directly (shared by the service provider tests
// in this folder), built on hostbroker/testing.

const contexts = new WeakMap<object, TestContext<never>>();

/** A context with these instance settings (parsed as the Broker does), every log line kept in `logs`. */
export async function providerTestContext<D extends AnyProviderDefinition>(
  definition: D,
  instanceSettings: Record<string, unknown>,
): Promise<{ ctx: TestContext<InstanceOf<NonNullable<D['instance']>>>['ctx']; logs: string[]; cleanup: () => Promise<void> }> {
  const t = await testContext(definition, { instanceSettings });
  contexts.set(t.ctx, t as TestContext<never>);
  return { ctx: t.ctx, logs: t.logLines, cleanup: () => t.cleanup() };
}

/** The host context the Broker passes with `ctx` for a target's (or a record's) host. */
export function on<I>(ctx: ProviderContext<I>, of: CheckoutTarget | HostRecord, options: { signal?: AbortSignal } = {}): HostContext<I> {
  const t = contexts.get(ctx) as TestContext<I> | undefined;
  if (!t) throw new Error('on(): give a context made by providerTestContext()');
  return testHostContext(t, 'record' in of ? of.record : of, options);
}

/** A target and the host context for it, to spread into `checkout(args, ...at(ctx, target))`. */
export function at<I>(ctx: ProviderContext<I>, of: CheckoutTarget, options: { signal?: AbortSignal } = {}): [CheckoutTarget, HostContext<I>] {
  return [of, on(ctx, of, options)];
}

let counter = 0;
/** A checkout target with a fresh intent record. */
export function target(provider: string, overrides: Partial<HostRecord> = {}): CheckoutTarget {
  counter++;
  const record: HostRecord = {
    id: `rec-${process.pid}-${counter}`,
    name: `host-${counter}`,
    hostname: '',
    provider,
    instance: 'default',
    state: 'provisioning',
    recipe: { provider, args: {} },
    owner: 'tester',
    brokerId: 'broker-test-1',
    createdAt: new Date().toISOString(),
    data: {},
    ...overrides,
  };
  return { record, index: 0, count: 1 };
}
