/**
 * A small Tower/AWX server for tests: the REST API v2 endpoints the `tower` provider uses, with
 * AWX's shapes (paginated `{count, next, previous, results}`, `{"detail": ...}` errors, launch
 * answers with `workflow_job`/`job`, workflow job nodes with `summary_fields.job`, job artifacts
 * and failed job events). Workflows are scripted: each launch runs a list of steps (child jobs)
 * whose status and artifacts the test decides.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { sendJson, readBody, closeServer, listenOnLoopback } from './http-fake.js';

/** One child job of a scripted workflow. */
export interface Step {
  name: string;
  status: 'successful' | 'failed' | 'error';
  artifacts?: Record<string, unknown>;
  explanation?: string;
  /** Failed task events: `{ task, msg }`. */
  events?: Array<{ task: string; msg: string }>;
}

/** What a launch of a template does, given its extra vars and launch number. */
export type Script = (launch: { extraVars: Record<string, unknown>; inventory?: number; n: number }) => Step[];

export interface FakeTemplate {
  id: number;
  name: string;
  kind: 'workflow' | 'job_template';
  description: string;
  inventory: number | null;
  extraVars: Record<string, unknown>;
  survey?: Array<{ variable: string; question_name: string; type: string; default?: unknown; required?: boolean; choices?: string }>;
  canStart: boolean;
  script: Script;
  /** Status GETs a launch answers "running" before it finishes. */
  polls: number;
  /** `ask_variables_on_launch`: without it AWX drops extra vars not in the survey (ignored_fields). */
  askVariables: boolean;
  /** `ask_inventory_on_launch`: without it AWX drops a launch's inventory (ignored_fields). */
  askInventory: boolean;
}

interface FakeJob {
  id: number;
  kind: 'workflow' | 'job_template';
  template: FakeTemplate;
  extraVars: Record<string, unknown>;
  inventory?: number;
  steps: Step[];
  children: number[];
  pollsLeft: number;
  status: string;
  created: string;
}

interface ChildJob {
  id: number;
  name: string;
  created: string;
  status: string;
  artifacts: Record<string, unknown>;
  explanation: string;
  events: Array<{ task: string; msg: string }>;
}

/** A fault the server answers instead of the real thing. */
export interface Fault {
  method?: string;
  /** Matched against the path (without query). */
  path: RegExp;
  status: number;
  body?: unknown;
  /** How many requests it affects (default 1). */
  times?: number;
  /** Cut the connection instead of answering. */
  drop?: boolean;
}

export interface FakeHost {
  id: number;
  name: string;
  inventory: number;
  variables: Record<string, unknown>;
  facts: Record<string, unknown>;
}

/** A running fake Tower. */
export class FakeTower {
  readonly server: Server;
  url = '';
  token = 'tower-token-0123456789abcdef';
  username = 'jdoe';
  password = 'tower-pass-s3cret';
  readonly templates: FakeTemplate[] = [];
  readonly inventories: Array<{ id: number; name: string }> = [];
  readonly hosts: FakeHost[] = [];
  readonly jobs = new Map<number, FakeJob>();
  readonly children = new Map<number, ChildJob>();
  /** Every launch, in order. */
  readonly launches: Array<{ template: string; extraVars: Record<string, unknown>; inventory?: number }> = [];
  /** Every request: method, path with query, Authorization header. */
  readonly requests: Array<{ method: string; url: string; authorization?: string }> = [];
  readonly faults: Fault[] = [];
  /** Page size limit of list answers (AWX caps page_size; small here to test pagination). */
  maxPageSize = 200;
  private nextId = 100;
  private launchCount = 0;

  private constructor() {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => sendJson(res, 500, { detail: String(error) }));
    });
  }

  /** Starts a server on 127.0.0.1 with a random port. */
  static async start(): Promise<FakeTower> {
    const fake = new FakeTower();
    fake.url = await listenOnLoopback(fake.server);
    return fake;
  }

  async close(): Promise<void> {
    await closeServer(this.server);
  }

  /** Adds a workflow (or job template) with a script. */
  addTemplate(t: Partial<FakeTemplate> & { name: string; script: Script }): FakeTemplate {
    const template: FakeTemplate = {
      id: this.nextId++,
      kind: 'workflow',
      description: '',
      inventory: this.inventories[0]?.id ?? null,
      extraVars: {},
      canStart: true,
      polls: 1,
      askVariables: true,
      askInventory: true,
      ...t,
    };
    this.templates.push(template);
    return template;
  }

  addInventory(name: string): number {
    const id = this.nextId++;
    this.inventories.push({ id, name });
    return id;
  }

  addHost(h: Omit<FakeHost, 'id'>): FakeHost {
    const host = { id: this.nextId++, ...h };
    this.hosts.push(host);
    return host;
  }

  /** Launches of one template. */
  launchesOf(name: string): Array<{ template: string; extraVars: Record<string, unknown>; inventory?: number }> {
    return this.launches.filter((l) => l.template === name);
  }

  private authorized(req: IncomingMessage): boolean {
    const auth = req.headers.authorization ?? '';
    if (auth === `Bearer ${this.token}`) return true;
    if (auth.startsWith('Basic ')) {
      const [user, ...rest] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
      return user === this.username && rest.join(':') === this.password;
    }
    return false;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    this.requests.push({ method, url: url.pathname + url.search, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    const body = await readBody(req);

    const fault = this.faults.find((f) => (f.method ?? method) === method && f.path.test(url.pathname) && (f.times ?? 1) > 0);
    if (fault) {
      fault.times = (fault.times ?? 1) - 1;
      if (fault.drop) {
        req.socket.destroy();
        return;
      }
      return sendJson(res, fault.status, fault.body ?? { detail: 'A server error has occurred.' });
    }
    if (!this.authorized(req)) {
      return sendJson(res, 401, { detail: req.headers.authorization ? 'Invalid token.' : 'Authentication credentials were not provided.' });
    }
    const p = url.pathname.replace(/^\/api\/v2/, '');
    const q = url.searchParams;
    let m: RegExpExecArray | null;

    if (method === 'GET' && p === '/me/') return sendJson(res, 200, page([{ id: 1, username: this.username }], url, this));
    if (method === 'GET' && (m = /^\/(workflow_job_templates|job_templates)\/$/.exec(p))) {
      const kind = m[1] === 'workflow_job_templates' ? 'workflow' : 'job_template';
      let list = this.templates.filter((t) => t.kind === kind);
      if (q.get('name')) list = list.filter((t) => t.name === q.get('name'));
      return sendJson(res, 200, page(list.map(templateJson), url, this));
    }
    if (method === 'GET' && (m = /^\/(workflow_job_templates|job_templates)\/(\d+)\/survey_spec\/$/.exec(p))) {
      const t = this.templates.find((x) => x.id === Number(m![2]));
      if (!t) return sendJson(res, 404, { detail: 'Not found.' });
      return sendJson(res, 200, { name: '', description: '', spec: t.survey ?? [] });
    }
    if (method === 'POST' && (m = /^\/(workflow_job_templates|job_templates)\/(\d+)\/launch\/$/.exec(p))) {
      const t = this.templates.find((x) => x.id === Number(m![2]));
      if (!t) return sendJson(res, 404, { detail: 'Not found.' });
      if (!t.canStart) return sendJson(res, 403, { detail: 'You do not have permission to perform this action.' });
      const parsed = JSON.parse(body || '{}') as { extra_vars?: string; inventory?: number };
      const asked = parsed.extra_vars ? (JSON.parse(parsed.extra_vars) as Record<string, unknown>) : {};
      if (parsed.inventory !== undefined && !this.inventories.some((i) => i.id === parsed.inventory)) {
        return sendJson(res, 400, { inventory: [`Invalid pk "${parsed.inventory}" - object does not exist.`] });
      }
      // AWX keeps what the template prompts for (or its survey asks) and reports the rest as ignored_fields.
      const ignored: Record<string, unknown> = {};
      const extraVars: Record<string, unknown> = {};
      const rejected: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(asked)) {
        if (t.askVariables || t.survey?.some((question) => question.variable === k)) extraVars[k] = v;
        else rejected[k] = v;
      }
      if (Object.keys(rejected).length) ignored.extra_vars = rejected;
      let inventory = parsed.inventory;
      if (inventory !== undefined && !t.askInventory && inventory !== t.inventory) {
        ignored.inventory = inventory;
        inventory = undefined;
      }
      this.launches.push({ template: t.name, extraVars, ...(inventory !== undefined ? { inventory } : {}) });
      const job = this.launch(t, extraVars, inventory);
      const type = t.kind === 'workflow' ? 'workflow_job' : 'job';
      res.setHeader('Location', `/api/v2/${t.kind === 'workflow' ? 'workflow_jobs' : 'jobs'}/${job.id}/`);
      return sendJson(res, 201, { [type]: job.id, ignored_fields: ignored, ...jobListJson(job) });
    }
    if (method === 'GET' && (p === '/workflow_jobs/' || p === '/jobs/')) {
      const kind = p === '/jobs/' ? 'job_template' : 'workflow';
      const filtered = this.filterJobs(kind, q);
      if (typeof filtered === 'string') return sendJson(res, 403, { detail: filtered });
      return sendJson(res, 200, page(filtered.map(jobListJson), url, this));
    }
    if (method === 'GET' && (m = /^\/workflow_jobs\/(\d+)\/$/.exec(p))) {
      const job = this.jobs.get(Number(m[1]));
      if (job?.kind !== 'workflow') return sendJson(res, 404, { detail: 'Not found.' });
      this.tick(job);
      return sendJson(res, 200, { ...jobListJson(job), job_explanation: '' });
    }
    if (method === 'GET' && (m = /^\/workflow_jobs\/(\d+)\/workflow_nodes\/$/.exec(p))) {
      const job = this.jobs.get(Number(m[1]));
      if (!job) return sendJson(res, 404, { detail: 'Not found.' });
      const nodes = job.children.map((cid, i) => {
        const c = this.children.get(cid)!;
        return {
          id: job.id * 100 + i,
          type: 'workflow_job_node',
          job: c.id,
          summary_fields: { job: { id: c.id, name: c.name, status: c.status, failed: c.status !== 'successful', type: 'job' } },
        };
      });
      // A node that never ran has no job.
      nodes.push({ id: job.id * 100 + 99, type: 'workflow_job_node', job: null as unknown as number, summary_fields: {} as never });
      return sendJson(res, 200, page(nodes, url, this));
    }
    if (method === 'POST' && (m = /^\/(workflow_jobs|jobs)\/(\d+)\/cancel\/$/.exec(p))) {
      const job = this.jobs.get(Number(m[2]));
      if (!job) return sendJson(res, 404, { detail: 'Not found.' });
      if (job.status === 'pending' || job.status === 'running') {
        job.status = 'canceled';
        job.pollsLeft = 0;
        this.runSteps(job, true);
        return sendJson(res, 202, undefined);
      }
      // GenericCancelView: a job that cannot be canceled gets DRF's "method not allowed".
      return sendJson(res, 405, { detail: 'Method "POST" not allowed.' });
    }
    if (method === 'GET' && (m = /^\/jobs\/(\d+)\/$/.exec(p))) {
      const id = Number(m[1]);
      const top = this.jobs.get(id);
      if (top && top.kind === 'job_template') {
        this.tick(top);
        const c = top.children[0] !== undefined ? this.children.get(top.children[0]) : undefined;
        return sendJson(res, 200, {
          ...jobListJson(top),
          artifacts: c?.artifacts ?? {},
          job_explanation: c?.explanation ?? '',
          result_traceback: '',
        });
      }
      const c = this.children.get(id);
      if (!c) return sendJson(res, 404, { detail: 'Not found.' });
      return sendJson(res, 200, {
        id,
        type: 'job',
        url: `/api/v2/jobs/${id}/`,
        name: c.name,
        created: c.created,
        status: c.status,
        failed: c.status !== 'successful',
        launch_type: 'workflow',
        job_template: null,
        extra_vars: '{}',
        artifacts: c.artifacts,
        job_explanation: c.explanation,
        result_traceback: c.status === 'error' ? 'Traceback (most recent call last):\n  boom' : '',
      });
    }
    if (method === 'GET' && (m = /^\/jobs\/(\d+)\/job_events\/$/.exec(p))) {
      const id = Number(m[1]);
      const top = this.jobs.get(id);
      const c = this.children.get(top?.children[0] ?? id);
      if (!c) return sendJson(res, 404, { detail: 'Not found.' });
      const events = c.events.map((e, i) => ({
        id: i + 1,
        failed: true,
        task: e.task,
        event: 'runner_on_failed',
        event_data: { task: e.task, res: { msg: e.msg, changed: false } },
      }));
      return sendJson(res, 200, page(events, url, this));
    }
    if (method === 'GET' && p === '/inventories/') {
      let list = this.inventories;
      if (q.get('name')) list = list.filter((i) => i.name === q.get('name'));
      return sendJson(
        res,
        200,
        page(
          list.map((i) => ({ ...i, type: 'inventory', url: `/api/v2/inventories/${i.id}/`, kind: '' })),
          url,
          this,
        ),
      );
    }
    if (method === 'GET' && (m = /^\/inventories\/(\d+)\/$/.exec(p))) {
      const inv = this.inventories.find((i) => i.id === Number(m![1]));
      return inv
        ? sendJson(res, 200, { ...inv, type: 'inventory', url: `/api/v2/inventories/${inv.id}/`, kind: '' })
        : sendJson(res, 404, { detail: 'Not found.' });
    }
    if (method === 'GET' && (m = /^\/inventories\/(\d+)\/hosts\/$/.exec(p))) {
      const list = this.hosts.filter((h) => h.inventory === Number(m![1]));
      return sendJson(
        res,
        200,
        page(
          list.map((h) => ({
            id: h.id,
            type: 'host',
            name: h.name,
            inventory: h.inventory,
            variables: JSON.stringify(h.variables),
            summary_fields: { inventory: { id: h.inventory, name: this.inventories.find((i) => i.id === h.inventory)?.name ?? '' } },
          })),
          url,
          this,
        ),
      );
    }
    if (method === 'GET' && (m = /^\/hosts\/(\d+)\/ansible_facts\/$/.exec(p))) {
      const h = this.hosts.find((x) => x.id === Number(m![1]));
      return h ? sendJson(res, 200, h.facts) : sendJson(res, 404, { detail: 'Not found.' });
    }
    return sendJson(res, 404, { detail: 'Not found.' });
  }

  private launch(t: FakeTemplate, extraVars: Record<string, unknown>, inventory: number | undefined): FakeJob {
    const job: FakeJob = {
      id: this.nextId++,
      kind: t.kind,
      template: t,
      extraVars,
      ...(inventory !== undefined ? { inventory } : {}),
      steps: t.script({ extraVars, ...(inventory !== undefined ? { inventory } : {}), n: ++this.launchCount }),
      children: [],
      pollsLeft: t.polls,
      status: 'pending',
      created: new Date().toISOString(),
    };
    this.jobs.set(job.id, job);
    return job;
  }

  /**
   * The jobs of a list request, filtered as AWX's field lookups do: `prevent_search` fields
   * (`extra_vars`) are refused with the message AWX gives (returned as a string).
   */
  private filterJobs(kind: 'workflow' | 'job_template', q: URLSearchParams): FakeJob[] | string {
    let list = [...this.jobs.values()].filter((j) => j.kind === kind);
    for (const [key, value] of q) {
      const field = key.split('__')[0]!;
      if (['extra_vars', 'survey_passwords', 'job_args', 'job_env', 'start_args'].includes(field)) return `Filtering on ${field} is not allowed.`;
      if (key === 'workflow_job_template' || key === 'job_template') list = list.filter((j) => j.template.id === Number(value));
      if (key === 'created__gte') list = list.filter((j) => j.created >= new Date(value).toISOString());
    }
    if (q.get('order_by') === '-id') list.sort((a, b) => b.id - a.id);
    return list;
  }

  /** One status poll: the job runs after `polls` of them. */
  private tick(job: FakeJob): void {
    if (job.status !== 'pending' && job.status !== 'running') return;
    if (job.pollsLeft > 0) {
      job.pollsLeft--;
      job.status = 'running';
      return;
    }
    this.runSteps(job, false);
  }

  private runSteps(job: FakeJob, canceled: boolean): void {
    if (job.children.length) return;
    for (const step of job.steps) {
      // A canceled workflow ran its first step only.
      if (canceled && job.children.length >= 1) break;
      const id = this.nextId++;
      this.children.set(id, {
        id,
        name: step.name,
        created: new Date().toISOString(),
        status: step.status,
        artifacts: step.artifacts ?? {},
        explanation: step.explanation ?? '',
        events: step.events ?? [],
      });
      job.children.push(id);
      if (step.status !== 'successful') break;
    }
    if (!canceled)
      job.status = job.steps.every((s) => s.status === 'successful')
        ? 'successful'
        : job.steps.find((s) => s.status !== 'successful')!.status === 'error'
          ? 'error'
          : 'failed';
  }
}

function templateJson(t: FakeTemplate): Record<string, unknown> {
  return {
    id: t.id,
    type: t.kind === 'workflow' ? 'workflow_job_template' : 'job_template',
    url: `/api/v2/${t.kind === 'workflow' ? 'workflow_job_templates' : 'job_templates'}/${t.id}/`,
    name: t.name,
    description: t.description,
    inventory: t.inventory,
    extra_vars: JSON.stringify(t.extraVars),
    survey_enabled: (t.survey?.length ?? 0) > 0,
    ask_variables_on_launch: t.askVariables,
    ask_inventory_on_launch: t.askInventory,
    summary_fields: { user_capabilities: { edit: false, delete: false, start: t.canStart, schedule: t.canStart, copy: false } },
  };
}

/** A job as AWX's JobListSerializer / WorkflowJobListSerializer show it (the fields hostbroker reads). */
function jobListJson(j: FakeJob): Record<string, unknown> {
  const workflow = j.kind === 'workflow';
  return {
    id: j.id,
    type: workflow ? 'workflow_job' : 'job',
    url: `/api/v2/${workflow ? 'workflow_jobs' : 'jobs'}/${j.id}/`,
    name: j.template.name,
    created: j.created,
    status: j.status,
    failed: j.status === 'failed' || j.status === 'error',
    launch_type: 'manual',
    [workflow ? 'workflow_job_template' : 'job_template']: j.template.id,
    extra_vars: JSON.stringify(j.extraVars),
  };
}

/** AWX pagination: `page` and `page_size`, absolute-path `next` links. */
function page(items: unknown[], url: URL, fake: FakeTower): Record<string, unknown> {
  const size = Math.min(Number(url.searchParams.get('page_size') ?? 25), fake.maxPageSize);
  const n = Number(url.searchParams.get('page') ?? 1);
  const slice = items.slice((n - 1) * size, n * size);
  const link = (k: number) => {
    const u = new URL(url.toString());
    u.searchParams.set('page', String(k));
    return u.pathname + u.search;
  };
  return { count: items.length, next: n * size < items.length ? link(n + 1) : null, previous: n > 1 ? link(n - 1) : null, results: slice };
}
