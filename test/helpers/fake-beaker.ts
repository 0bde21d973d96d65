/**
 * A small in-process Beaker server for tests, following Beaker's documented server API:
 * `POST /auth/login_password` and `/auth/login_oauth2` (JSON; set the `beaker_auth_token`
 * cookie), XML-RPC on `/RPC2` (`jobs.upload` → "J:<id>", `jobs.filter`, `distrotrees.filter`,
 * faults for bad input), `GET /jobs/<id>` (JSON with recipesets/recipes), `POST /jobs/<id>/status`
 * (`{status: "Cancelled"}` → 204), `POST /recipes/<id>/watchdog` (`{kill_time}` → `{seconds}`).
 * HTTP errors are plain text, as Beaker's are. Each job's recipe moves on one step per
 * `GET /jobs/<id>`: Queued → Scheduled → Installing → Running/Reserved (with a system FQDN), or
 * to Aborted when the job's outcome says so.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { closeServer, listenOnLoopback } from './http-fake.js';

export interface FakeJob {
  id: number;
  owner: string;
  xml: string;
  whiteboard: string;
  status: string;
  result: string;
  recipeId: number;
  recipeStatus: string;
  fqdn: string | null;
  /** Polls left before the recipe is reserved. */
  stepsLeft: number;
  outcome: 'reserve' | 'abort';
  /** `reserved`: recipe status Reserved; `task`: Running with /distribution/reservesys running. */
  style: 'reserved' | 'task';
  killTime?: number;
  cancelMsg?: string;
}

/** What a test can see and change on the fake server. */
export class FakeBeaker {
  readonly users = new Map<string, string>(); // username → password
  readonly tokens = new Map<string, string>(); // access token → username
  readonly jobs = new Map<number, FakeJob>();
  readonly requests: { method: string; path: string; cookie?: string; body: string }[] = [];
  /** How the next submitted jobs behave. */
  next: { steps: number; outcome: 'reserve' | 'abort'; style: 'reserved' | 'task' } = { steps: 2, outcome: 'reserve', style: 'reserved' };
  /** Paths that answer 200 with a malformed body. */
  readonly malformed: RegExp[] = [];
  private readonly faults: { method: string; path: RegExp; status: number; body: string; times: number }[] = [];
  private readonly sessions = new Map<string, string>(); // cookie → username
  private nextId = 100;
  private server!: Server;
  url = '';
  /** The FQDN every scheduled system gets (e.g. a real test sshd's address); default system<id>.lab.example. */
  systemFqdn: string | undefined;

  fail(method: string, path: RegExp, status: number, body = '', times = 1): void {
    this.faults.push({ method, path, status, body, times });
  }

  /** Forgets every session (as if they expired). */
  expireSessions(): void {
    this.sessions.clear();
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          this.handle(req, res, Buffer.concat(chunks).toString('utf8'));
        } catch (error) {
          text(res, 500, `Internal Server Error: ${String(error)}`);
        }
      });
    });
    this.url = `${await listenOnLoopback(this.server)}/bkr`;
    return this;
  }

  async stop(): Promise<void> {
    await closeServer(this.server);
  }

  private handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const path = url.pathname.replace(/^\/bkr/, '');
    this.requests.push({ method, path, cookie: req.headers.cookie, body });
    const fault = this.faults.find((f) => f.method === method && f.path.test(path) && f.times > 0);
    if (fault) {
      fault.times--;
      return text(res, fault.status, fault.body);
    }

    if (method === 'POST' && (path === '/auth/login_password' || path === '/auth/login_oauth2')) {
      const data = JSON.parse(body || '{}') as Record<string, string>;
      const user = path.endsWith('password')
        ? this.users.get(data.username ?? '') === data.password && data.password !== undefined
          ? data.username
          : undefined
        : this.tokens.get(data.access_token ?? '');
      if (!user) return text(res, 401, path.endsWith('password') ? 'Invalid username or password' : 'Invalid token');
      const cookie = `tok${Math.random().toString(36).slice(2)}`;
      this.sessions.set(cookie, user);
      res.writeHead(200, { 'Content-Type': 'application/json', 'Set-Cookie': `beaker_auth_token=${cookie}; Path=/` });
      return void res.end(JSON.stringify({ username: user }));
    }
    const cookie = /beaker_auth_token=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    const user = cookie ? this.sessions.get(cookie) : undefined;
    if (this.malformed.some((r) => r.test(path))) return json(res, 200, { nope: true });

    if (path === '/RPC2' && method === 'POST') return this.rpc(res, body, user);

    let m: RegExpExecArray | null;
    if ((m = /^\/jobs\/(\d+)$/.exec(path)) && method === 'GET') {
      const job = this.jobs.get(Number(m[1]));
      if (!job) return text(res, 404, 'Job not found');
      this.advance(job);
      return json(res, 200, this.serialize(job));
    }
    if ((m = /^\/jobs\/(\d+)\/status$/.exec(path)) && method === 'POST') {
      if (!user) return text(res, 401, 'Authenticated session required');
      const job = this.jobs.get(Number(m[1]));
      if (!job) return text(res, 404, 'Job not found');
      if (job.owner !== user) return text(res, 403, 'Cannot update job status');
      const data = JSON.parse(body || '{}') as Record<string, string>;
      if (data.status !== 'Cancelled') return text(res, 400, 'Status must be "Cancelled"');
      if (!['Completed', 'Cancelled', 'Aborted'].includes(job.status)) {
        job.status = job.recipeStatus = 'Cancelled';
        job.result = 'Warn';
        job.cancelMsg = data.msg;
      }
      return text(res, 204, '');
    }
    if ((m = /^\/recipes\/(\d+)\/watchdog$/.exec(path)) && method === 'POST') {
      if (!user) return text(res, 401, 'Authenticated session required');
      const job = [...this.jobs.values()].find((j) => j.recipeId === Number(m![1]));
      if (!job) return text(res, 404, 'Recipe not found');
      const data = JSON.parse(body || '{}') as Record<string, unknown>;
      // Recipe.extend: a non-number is a TypeError (500); a finished recipe has no watchdog (BX → 400);
      // 0 means "end the recipe now" (what the web UI's Return Reservation sends).
      if (typeof data.kill_time !== 'number') return text(res, 500, 'Internal Server Error');
      if (['Completed', 'Cancelled', 'Aborted'].includes(job.recipeStatus)) return text(res, 400, `No watchdog exists for recipe ${job.recipeId}`);
      job.killTime = data.kill_time;
      return json(res, 200, { seconds: data.kill_time });
    }
    return text(res, 404, 'Not Found');
  }

  private rpc(res: ServerResponse, body: string, user: string | undefined): void {
    const method = /<methodName>([^<]+)<\/methodName>/.exec(body)?.[1];
    const fault = (code: number, message: string) =>
      xml(
        res,
        `<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>${code}</int></value></member><member><name>faultString</name><value><string>${esc(message)}</string></value></member></struct></value></fault></methodResponse>`,
      );
    const ok = (value: string) => xml(res, `<methodResponse><params><param><value>${value}</value></param></params></methodResponse>`);
    if (method === 'jobs.upload') {
      if (!user) return fault(1, "<class 'cherrypy._cperror.HTTPRedirect'>:Anonymous access denied");
      const jobXml = unesc(/<string>([\s\S]*?)<\/string>/.exec(body)?.[1] ?? '');
      const distro = /<distro_name op="=" value="([^"]*)"/.exec(jobXml)?.[1];
      if (distro === 'NO-SUCH-DISTRO')
        return fault(
          1,
          '<class \'bkr.common.bexceptions.BX\'>:No distro tree matches Recipe: <distroRequires><and><distro_name op="=" value="NO-SUCH-DISTRO"/></and></distroRequires>',
        );
      if (!/<job[\s>]/.test(jobXml) || !/<recipe[\s>]/.test(jobXml)) return fault(1, "<class 'bkr.common.bexceptions.BX'>:Job XML is not valid");
      const id = this.nextId++;
      const force = /<hostRequires force="([^"]+)"/.exec(jobXml)?.[1];
      this.jobs.set(id, {
        id,
        owner: user,
        xml: jobXml,
        whiteboard: unesc(/<whiteboard>([\s\S]*?)<\/whiteboard>/.exec(jobXml)?.[1] ?? ''),
        status: 'Queued',
        result: 'New',
        recipeId: id * 10,
        recipeStatus: 'Queued',
        fqdn: force ?? null,
        stepsLeft: this.next.steps,
        outcome: this.next.outcome,
        style: this.next.style,
      });
      return ok(`<string>J:${id}</string>`);
    }
    if (method === 'jobs.filter') {
      const mine = /<name>mine<\/name>\s*<value>\s*<boolean>1<\/boolean>/.test(body);
      if (mine && !user) return fault(1, "<class 'bkr.common.bexceptions.BX'>:You should be authenticated to use the --mine filter.");
      const limit = Number(/<name>limit<\/name>\s*<value>\s*<int>(\d+)<\/int>/.exec(body)?.[1] ?? 1e9);
      const ids = [...this.jobs.values()]
        .filter((j) => !mine || j.owner === user)
        .map((j) => j.id)
        .sort((a, b) => b - a)
        .slice(0, limit);
      return ok(`<array><data>${ids.map((id) => `<value><string>J:${id}</string></value>`).join('')}</data></array>`);
    }
    if (method === 'distrotrees.filter') {
      return ok(
        `<array><data><value><struct><member><name>distro_name</name><value><string>RHEL-9.4.0</string></value></member><member><name>arch</name><value><string>x86_64</string></value></member><member><name>variant</name><value><string>BaseOS</string></value></member><member><name>distro_tree_id</name><value><int>42</int></value></member></struct></value></data></array>`,
      );
    }
    return fault(1, `<class 'xmlrpclib.Fault'>:method "${method}" is not supported`);
  }

  private advance(job: FakeJob): void {
    if (['Completed', 'Cancelled', 'Aborted', 'Reserved'].includes(job.recipeStatus)) return;
    if (job.recipeStatus === 'Running' && job.style === 'task' && job.stepsLeft <= 0) return;
    if (job.stepsLeft > 0) {
      job.stepsLeft--;
      job.recipeStatus = job.status = job.stepsLeft > 1 ? 'Scheduled' : 'Installing';
      job.fqdn ??= this.systemFqdn ?? `system${job.id}.lab.example`;
      return;
    }
    if (job.outcome === 'abort') {
      job.status = job.recipeStatus = 'Aborted';
      job.result = 'Warn';
      return;
    }
    job.recipeStatus = job.style === 'reserved' ? 'Reserved' : 'Running';
    job.status = job.recipeStatus === 'Reserved' ? 'Reserved' : 'Running';
    job.result = 'Pass';
  }

  private serialize(job: FakeJob) {
    const tasks = [
      { id: job.recipeId * 10, name: '/distribution/check-install', status: job.recipeStatus === 'Queued' ? 'Queued' : 'Completed' },
      {
        id: job.recipeId * 10 + 1,
        name: '/distribution/reservesys',
        status: job.recipeStatus === 'Running' ? 'Running' : job.recipeStatus === 'Reserved' ? 'Completed' : 'Queued',
      },
    ];
    return {
      id: job.id,
      t_id: `J:${job.id}`,
      owner: { user_name: job.owner },
      whiteboard: job.whiteboard,
      status: job.status,
      result: job.result,
      recipesets: [
        {
          id: job.id * 5,
          recipes: [
            {
              id: job.recipeId,
              t_id: `R:${job.recipeId}`,
              status: job.recipeStatus,
              result: job.result,
              whiteboard: null,
              resource: job.recipeStatus === 'Queued' ? null : { fqdn: job.fqdn },
              tasks,
            },
          ],
        },
      ],
    };
  }
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const unesc = (s: string) =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, body ? { 'Content-Type': 'text/plain; charset=utf-8' } : {});
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

function xml(res: ServerResponse, body: string): void {
  res.writeHead(200, { 'Content-Type': 'text/xml' });
  res.end(`<?xml version='1.0'?>\n${body}`);
}
