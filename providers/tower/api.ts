/**
 * The slice of the Tower/AWX REST API v2 the `tower` provider uses: templates, launch, job
 * status, workflow nodes, artifacts, failure events, inventories and hosts. Every answer is
 * validated with zod; every error carries Tower's own message (`{"detail": ...}`).
 * @module
 */
import { parse as parseYaml } from 'yaml';
import { lazySchema, z } from '../../lib/zod.js';
import { ProviderError, SettingsError, TimeoutError, UserInputError } from '../../lib/errors.js';
import { HttpClient, sleep } from '../../lib/http.js';
import { tlsOptionsOf } from '../../lib/http-settings.js';
import type { Logger } from '../../lib/logger.js';
import type { ProviderContext } from '../../lib/provider.js';
import { registerSecret } from '../../lib/secrets.js';
import { toMs } from '../../lib/settings.js';
import type { TowerInstance } from './definition.js';

/** A workflow job template or a job template. */
export type TemplateKind = 'workflow' | 'job_template';

/** A launched job: a workflow job or a (playbook) job. */
export interface JobRef {
  kind: TemplateKind;
  id: number;
}

export const Page = <T extends z.ZodType>(item: T) =>
  z.object({ count: z.number().int().nonnegative().optional(), next: z.string().nullable().optional(), results: z.array(item) });

const UserCapabilities = lazySchema(() => z.object({ start: z.boolean().optional() }).loose());

export const Template = lazySchema(() =>
  z
    .object({
      id: z.number().int(),
      name: z.string(),
      description: z.string().optional().default(''),
      inventory: z.number().int().nullable().optional(),
      extra_vars: z.string().nullable().optional(),
      survey_enabled: z.boolean().optional(),
      summary_fields: z.object({ user_capabilities: UserCapabilities.optional() }).loose().optional(),
    })
    .loose(),
);
export type Template = z.output<typeof Template>;

export const LaunchResponse = lazySchema(() =>
  z
    .object({
      id: z.number().int().optional(),
      workflow_job: z.number().int().optional(),
      job: z.number().int().optional(),
      // What the template does not prompt for on launch: AWX drops it and launches anyway.
      ignored_fields: z.record(z.string(), z.unknown()).optional(),
    })
    .loose()
    .refine((r) => (r.workflow_job ?? r.job ?? r.id) !== undefined, { message: 'no job id in the launch answer' }),
);

/** Job statuses that end a job. */
export const FINISHED = new Set(['successful', 'failed', 'error', 'canceled']);

export const Job = lazySchema(() =>
  z
    .object({
      id: z.number().int(),
      name: z.string().optional().default(''),
      // new, pending, waiting, running, successful, failed, error, canceled (kept open for new ones)
      status: z.string().min(1),
      failed: z.boolean().optional().default(false),
      job_explanation: z.string().nullable().optional(),
      result_traceback: z.string().nullable().optional(),
      artifacts: z.record(z.string(), z.unknown()).nullable().optional(),
    })
    .loose(),
);
export type Job = z.output<typeof Job>;

export const WorkflowNode = lazySchema(() =>
  z
    .object({
      id: z.number().int(),
      summary_fields: z
        .object({
          job: z
            .object({
              id: z.number().int(),
              name: z.string().optional(),
              status: z.string().optional(),
              failed: z.boolean().optional(),
              type: z.string().optional(),
            })
            .loose()
            .optional(),
        })
        .loose()
        .optional(),
    })
    .loose(),
);
type WorkflowNode = z.output<typeof WorkflowNode>;

export const JobEvent = lazySchema(() =>
  z
    .object({
      failed: z.boolean().optional(),
      task: z.string().optional(),
      event_data: z
        .object({ res: z.object({ msg: z.unknown().optional() }).loose().optional(), task: z.string().optional() })
        .loose()
        .optional(),
    })
    .loose(),
);

export const JobListItem = lazySchema(() => z.object({ id: z.number().int(), extra_vars: z.string().nullable().optional() }).loose());

export const Inventory = lazySchema(() => z.object({ id: z.number().int(), name: z.string() }).loose());
export const TowerHost = lazySchema(() =>
  z
    .object({
      id: z.number().int(),
      name: z.string(),
      inventory: z.number().int().optional(),
      variables: z.string().nullable().optional(),
      summary_fields: z
        .object({ inventory: z.object({ name: z.string() }).loose().optional() })
        .loose()
        .optional(),
    })
    .loose(),
);
export type TowerHost = z.output<typeof TowerHost>;

const SurveySpec = lazySchema(() =>
  z
    .object({
      spec: z
        .array(
          z
            .object({
              variable: z.string(),
              question_name: z.string().optional(),
              type: z.string().optional(),
              default: z.unknown().optional(),
              required: z.boolean().optional(),
              choices: z.unknown().optional(),
            })
            .loose(),
        )
        .default([]),
    })
    .loose(),
);

const Me = lazySchema(() => Page(z.object({ username: z.string() }).loose()));

/** One failure reason of a failed job. */
export interface FailureReason {
  job: string;
  task?: string;
  reason: string;
}

/** A connection to one Tower instance, with its settings. */
export class TowerApi {
  readonly http: HttpClient;
  readonly settings: TowerInstance;
  private readonly logger: Logger;
  private readonly signal: AbortSignal;
  private readonly api: string;

  /** `directory`: the broker directory, against which a relative `ca_file` is resolved. */
  constructor(settings: TowerInstance, logger: Logger, signal: AbortSignal, directory = process.cwd()) {
    this.settings = settings;
    this.logger = logger;
    this.signal = signal;
    this.api = settings.apiPath;
    const authorization = authorizationOf(settings);
    this.http = new HttpClient({
      provider: 'tower',
      baseUrl: settings.baseUrl,
      headers: () => ({ Authorization: authorization }),
      timeoutMs: toMs(settings.requestTimeout),
      retries: settings.retries,
      retryDelayMs: toMs(settings.retryDelay),
      tls: tlsOptionsOf(settings, directory),
      authHint: "check tower.token (or tower.username and tower.password) in the settings and the user's Tower roles",
    });
  }

  /** Builds the API of the context's instance (its settings are parsed by the Broker). */
  static fromContext(ctx: ProviderContext<TowerInstance>): TowerApi {
    return new TowerApi(ctx.instanceSettings, ctx.logger, ctx.signal, ctx.directory);
  }

  /** GET a path under the API prefix (or an absolute `next` link) and validate it. */
  get<S extends z.ZodType>(path: string, schema: S, query?: Record<string, string | number | undefined>): Promise<z.output<S>> {
    return this.http.json('GET', this.path(path), schema, { ...(query ? { query } : {}), signal: this.signal });
  }

  /** Every item of a paginated list (follows `next`). */
  async all<S extends z.ZodType>(path: string, item: S, query: Record<string, string | number | undefined> = {}): Promise<z.output<S>[]> {
    const out: z.output<S>[] = [];
    let next: string | undefined = this.path(path);
    let q: Record<string, string | number | undefined> | undefined = { page_size: this.settings.pageSize, ...query };
    for (let guard = 0; next && guard < 10_000; guard++) {
      const page: z.output<ReturnType<typeof Page<S>>> = await this.http.json('GET', next, Page(item), { ...(q ? { query: q } : {}), signal: this.signal });
      out.push(...page.results);
      next = page.next ? new URL(page.next, this.settings.baseUrl).toString() : undefined;
      q = undefined; // `next` carries the query
    }
    return out;
  }

  /** The template of a kind by exact name; a UserInputError naming what to do when there is none. */
  async template(kind: TemplateKind, name: string): Promise<Template> {
    const found = await this.get(`${collection(kind)}/`, Page(Template), { name });
    const exact = found.results.filter((t) => t.name === name);
    if (exact.length === 0) {
      throw new UserInputError(
        `[tower] no ${kind === 'workflow' ? 'workflow' : 'job template'} named \`${name}\` is visible to this user; list them with broker.providers() help for tower (describe 'workflows' / 'job_templates') and check the spelling and the user's roles.`,
      );
    }
    return exact[exact.length - 1]!;
  }

  /** An inventory id from a name or id. */
  async inventoryId(ref: string | number): Promise<number> {
    if (typeof ref === 'number') return ref;
    if (/^\d+$/.test(ref)) return Number(ref);
    const found = await this.get('inventories/', Page(Inventory), { name: ref });
    const match = found.results.find((i) => i.name === ref);
    if (!match)
      throw new UserInputError(`[tower] no Tower inventory named \`${ref}\` is visible to this user; check tower.inventory or the \`inventory\` argument.`);
    return match.id;
  }

  /** An inventory's name from its id (undefined when it cannot be read). */
  async inventoryName(id: number): Promise<string | undefined> {
    try {
      return (await this.get(`inventories/${id}/`, Inventory)).name;
    } catch {
      return undefined;
    }
  }

  /** Launches a template; returns the new job. */
  async launch(kind: TemplateKind, template: Template, extraVars: Record<string, unknown>, inventory?: number): Promise<JobRef> {
    const body: Record<string, unknown> = { extra_vars: JSON.stringify(extraVars) };
    if (inventory !== undefined) body.inventory = inventory;
    const answer = await this.http.json('POST', this.path(`${collection(kind)}/${template.id}/launch/`), LaunchResponse, { json: body, signal: this.signal });
    const ignored = Object.keys(answer.ignored_fields ?? {});
    if (ignored.length) {
      this.logger.warn(
        `tower: ${template.name} ignored ${ignored.join(', ')} at launch (the template does not prompt for ${ignored.length > 1 ? 'them' : 'it'} on launch); enable "Prompt on launch" for ${ignored.join(' and ')} on the template so hostbroker's arguments reach it`,
        { template: template.name, ignored },
      );
    }
    return { kind, id: (answer.workflow_job ?? answer.job ?? answer.id)! };
  }

  /** The current state of a job. */
  job(ref: JobRef): Promise<Job> {
    return this.get(`${jobCollection(ref.kind)}/${ref.id}/`, Job);
  }

  /** Where a person can watch a job in the web UI. */
  uiUrl(ref: JobRef): string {
    return new URL(`/#/jobs/${ref.kind === 'workflow' ? 'workflow' : 'playbook'}/${ref.id}/output`, this.settings.baseUrl).toString();
  }

  /**
   * Polls a job until it ends. Connection errors and 5xx while polling are logged and polling
   * goes on, until `maxWait` has passed; other errors (401, 403, 404) end the wait.
   */
  async wait(ref: JobRef, what: string): Promise<Job> {
    const maxWait = toMs(this.settings.maxWait);
    const interval = toMs(this.settings.pollInterval);
    const deadline = Date.now() + maxWait;
    for (;;) {
      try {
        const job = await this.job(ref);
        if (FINISHED.has(job.status)) return job;
      } catch (error) {
        if (!(error instanceof ProviderError) || !error.retryable) throw error;
        this.logger.warn(`tower: polling ${what} failed, will retry`, { error: error.message });
      }
      if (this.signal.aborted)
        throw new ProviderError('tower', `waiting for ${what} was given up (the operation was aborted); it may still run: ${this.uiUrl(ref)}`);
      if (Date.now() + interval > deadline) {
        throw new TimeoutError(
          `[tower] ${what} did not finish within ${this.settings.maxWait} (tower.maxWait); it may still be running: ${this.uiUrl(ref)}. Raise tower.maxWait, or check the job in Tower.`,
          maxWait,
        );
      }
      await sleep(interval, this.signal);
    }
  }

  /** Asks Tower to cancel a job (already finished = fine). */
  async cancel(ref: JobRef): Promise<void> {
    await this.http.request('POST', this.path(`${jobCollection(ref.kind)}/${ref.id}/cancel/`), {
      signal: this.signal,
      ok: (s) => (s >= 200 && s < 300) || s === 405 || s === 404,
    });
  }

  /** The nodes of a workflow job that ran a job, oldest job first. */
  async nodesWithJobs(workflowJobId: number): Promise<Array<{ node: WorkflowNode; job: NonNullable<NonNullable<WorkflowNode['summary_fields']>['job']> }>> {
    const nodes = await this.all(`workflow_jobs/${workflowJobId}/workflow_nodes/`, WorkflowNode);
    return nodes.flatMap((node) => (node.summary_fields?.job ? [{ node, job: node.summary_fields.job }] : [])).sort((a, b) => a.job.id - b.job.id);
  }

  /** Artifacts of each job a workflow ran (nested workflows included), oldest first; `failed` tells which job failed. */
  async childArtifacts(ref: JobRef): Promise<Array<{ job: string; failed: boolean; artifacts: Record<string, unknown> }>> {
    if (ref.kind === 'job_template') {
      const job = await this.job(ref);
      return [{ job: job.name, failed: job.status !== 'successful', artifacts: job.artifacts ?? {} }];
    }
    const out: Array<{ job: string; failed: boolean; artifacts: Record<string, unknown> }> = [];
    for (const { job } of await this.nodesWithJobs(ref.id)) {
      if (job.type === 'workflow_job') out.push(...(await this.childArtifacts({ kind: 'workflow', id: job.id })));
      else if (job.type === undefined || job.type === 'job') {
        const full = await this.job({ kind: 'job_template', id: job.id });
        out.push({ job: full.name, failed: full.failed || full.status !== 'successful', artifacts: full.artifacts ?? {} });
      }
    }
    return out;
  }

  /** Why a job failed, in Tower's words: job explanations, tracebacks and failed task messages. */
  async failureReasons(ref: JobRef): Promise<FailureReason[]> {
    if (ref.kind === 'job_template') return this.jobFailure(ref.id);
    const reasons: FailureReason[] = [];
    const failed = (await this.nodesWithJobs(ref.id)).filter((n) => n.job.failed).reverse();
    for (const { job } of failed) {
      if (job.type === 'workflow_job') reasons.push(...(await this.failureReasons({ kind: 'workflow', id: job.id })));
      else reasons.push(...(await this.jobFailure(job.id)));
    }
    if (reasons.length === 0) {
      const wf = await this.job(ref);
      if (wf.job_explanation) reasons.push({ job: wf.name, reason: wf.job_explanation });
    }
    return reasons;
  }

  private async jobFailure(id: number): Promise<FailureReason[]> {
    const job = await this.job({ kind: 'job_template', id });
    const reasons: FailureReason[] = [];
    if (job.status === 'error' && (job.result_traceback || job.job_explanation)) {
      reasons.push({ job: job.name, reason: lastLines((job.result_traceback || job.job_explanation)!) });
    }
    const events = await this.get(`jobs/${id}/job_events/`, Page(JobEvent), { failed: 'true', page_size: 50 }).catch(() => ({
      results: [] as Array<z.output<typeof JobEvent>>,
    }));
    for (const ev of events.results) {
      const msg = ev.event_data?.res?.msg;
      if (ev.failed === false || msg === undefined || msg === null || msg === '') continue;
      const task = ev.task ?? ev.event_data?.task;
      reasons.push({ job: job.name, ...(task ? { task } : {}), reason: typeof msg === 'string' ? msg : JSON.stringify(msg) });
    }
    if (reasons.length === 0 && job.job_explanation) reasons.push({ job: job.name, reason: job.job_explanation });
    return reasons;
  }

  /**
   * Jobs of a template launched for a record (newest first): AWX forbids filtering on
   * `extra_vars` (it is `prevent_search`), so this lists the template's jobs created since
   * `since` and matches the `hostbroker_id` in each job's extra vars here.
   */
  async launchesFor(kind: TemplateKind, templateName: string, recordId: string, since: string): Promise<JobRef[]> {
    const found = await this.get(`${collection(kind)}/`, Page(Template), { name: templateName });
    const template = found.results.find((t) => t.name === templateName);
    if (!template) return [];
    const jobs = await this.all(`${jobCollection(kind)}/`, JobListItem, {
      [kind === 'workflow' ? 'workflow_job_template' : 'job_template']: template.id,
      created__gte: since,
      order_by: '-id',
    });
    return jobs.filter((j) => parseVariables(j.extra_vars).hostbroker_id === recordId).map((j) => ({ kind, id: j.id }));
  }

  /** Names of the workflows (or job templates) the user may launch. */
  async launchable(kind: TemplateKind): Promise<string[]> {
    const all = await this.all(`${collection(kind)}/`, Template);
    return all.filter((t) => t.summary_fields?.user_capabilities?.start !== false).map((t) => t.name);
  }

  /** A template's variables: its extra vars and survey questions. */
  async variables(kind: TemplateKind, name: string): Promise<Record<string, unknown>> {
    const t = await this.template(kind, name);
    const survey = t.survey_enabled === false ? undefined : await this.get(`${collection(kind)}/${t.id}/survey_spec/`, SurveySpec).catch(() => undefined);
    return {
      name: t.name,
      kind,
      description: t.description,
      inventory: t.inventory ? ((await this.inventoryName(t.inventory)) ?? t.inventory) : undefined,
      extraVars: parseVariables(t.extra_vars),
      survey: (survey?.spec ?? []).map((q) => ({
        variable: q.variable,
        question: q.question_name,
        type: q.type,
        required: q.required ?? false,
        default: q.default,
        ...(q.choices !== undefined && q.choices !== '' ? { choices: q.choices } : {}),
      })),
    };
  }

  /** Inventories visible to the user. */
  inventories(): Promise<Array<z.output<typeof Inventory>>> {
    return this.all('inventories/', Inventory);
  }

  /** Hosts of an inventory. */
  hosts(inventoryId: number): Promise<TowerHost[]> {
    return this.all(`inventories/${inventoryId}/hosts/`, TowerHost);
  }

  /** Ansible facts of a host ({} when they cannot be read). */
  async facts(hostId: number): Promise<Record<string, unknown>> {
    try {
      return await this.get(`hosts/${hostId}/ansible_facts/`, z.record(z.string(), z.unknown()));
    } catch {
      return {};
    }
  }

  /** The user the token or password belongs to. */
  async me(): Promise<string> {
    const page = await this.get('me/', Me);
    const user = page.results[0]?.username;
    if (!user) throw new ProviderError('tower', 'GET me/ named no user; set tower.username in the settings.');
    return user;
  }

  private path(path: string): string {
    if (/^https?:\/\//.test(path)) return path;
    return this.api + path.replace(/^\//, '');
  }
}

function collection(kind: TemplateKind): string {
  return kind === 'workflow' ? 'workflow_job_templates' : 'job_templates';
}

function jobCollection(kind: TemplateKind): string {
  return kind === 'workflow' ? 'workflow_jobs' : 'jobs';
}

/** The Authorization header for the settings; registers secrets so they are scrubbed everywhere. */
function authorizationOf(settings: TowerInstance): string {
  const token = settings.token ?? (settings.tokenEnv ? process.env[settings.tokenEnv] : undefined);
  if (token) {
    registerSecret(token);
    return `Bearer ${token}`;
  }
  const password = settings.password ?? (settings.passwordEnv ? process.env[settings.passwordEnv] : undefined);
  if (settings.username && password) {
    registerSecret(password);
    const basic = Buffer.from(`${settings.username}:${password}`).toString('base64');
    registerSecret(basic);
    return `Basic ${basic}`;
  }
  const missingEnv =
    settings.tokenEnv && !process.env[settings.tokenEnv]
      ? ` (the variable ${settings.tokenEnv} named by tower.tokenEnv is not set)`
      : settings.passwordEnv && !process.env[settings.passwordEnv]
        ? ` (the variable ${settings.passwordEnv} named by tower.passwordEnv is not set)`
        : '';
  throw new SettingsError(
    `tower needs credentials${missingEnv}: set tower.token (or tower.tokenEnv, e.g. BROKER_tower__token=...) for a personal access token, or tower.username with tower.password (or tower.passwordEnv).`,
  );
}

/** Parses Tower's extra vars / host variables text (JSON or YAML). */
export function parseVariables(text: string | null | undefined): Record<string, unknown> {
  if (!text?.trim()) return {};
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return parseYamlObject(text);
  }
}

function parseYamlObject(text: string): Record<string, unknown> {
  try {
    const v: unknown = parseYaml(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function lastLines(text: string, n = 5): string {
  return text.trim().split('\n').slice(-n).join('\n');
}
