/**
 * The `foreman` provider implementation: create a host in a hostgroup with `build: true`, wait
 * until Foreman reports it installed, delete it on checkin. Hosts carry the hostbroker tags as
 * host parameters, so a record still provisioning is found by its id.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { lazySchema, z } from '../../lib/zod.js';
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { ProviderError, SettingsError, TimeoutError, UserInputError, messageOf } from '../../lib/errors.js';
import { HttpClient, defaultErrorMessage, sleep } from '../../lib/http.js';
import { tlsOptionsOf } from '../../lib/http-settings.js';
import { type HostContext, type ProviderContext, TAGS, defaultSshConnection, implementProvider, standardTags } from '../../lib/provider.js';
import { registerSecret } from '../../lib/secrets.js';
import { toMs } from '../../lib/settings.js';
import { type ForemanInstance, foreman } from './definition.js';

/** The record id as a host parameter whose name `params.NAME` search can match (no dot). */
const SEARCHABLE_ID = 'hostbroker_id';
/** Foreman's build status codes (HostStatus::BuildStatus). */
const BUILD = { built: 0, pending: 1, tokenExpired: 2, failed: 3 } as const;

const Parameter = lazySchema(() => z.object({ name: z.string(), value: z.unknown() }).loose());

const Host = lazySchema(() =>
  z
    .object({
      id: z.number().int(),
      name: z.string(),
      ip: z.string().nullable().optional(),
      build: z.boolean().optional(),
      build_status: z.number().int().nullable().optional(),
      build_status_label: z.string().nullable().optional(),
      hostgroup_title: z.string().nullable().optional(),
      hostgroup_name: z.string().nullable().optional(),
      operatingsystem_name: z.string().nullable().optional(),
      owner_name: z.string().nullable().optional(),
      created_at: z.string().nullable().optional(),
      parameters: z.array(Parameter).optional(),
    })
    .loose(),
);
type Host = z.output<typeof Host>;

const List = <T extends z.ZodType>(item: T) =>
  z.object({
    total: z.number().int().optional(),
    subtotal: z.number().int().optional(),
    page: z.coerce.number().int().optional(),
    per_page: z.coerce.number().int().optional(),
    results: z.array(item),
  });

const Hostgroup = lazySchema(() => z.object({ id: z.number().int(), name: z.string(), title: z.string().nullable().optional() }).loose());

interface ForemanData {
  foremanId?: number;
  danglingHandled?: boolean;
  [key: string]: unknown;
}

class ForemanApi {
  readonly http: HttpClient;
  constructor(
    readonly settings: ForemanInstance,
    readonly signal: AbortSignal,
    directory = process.cwd(),
  ) {
    const password = settings.password ?? (settings.passwordEnv ? process.env[settings.passwordEnv] : undefined);
    if (!password) {
      throw new SettingsError(
        `foreman needs a password or personal access token for ${settings.username}: set foreman.password (e.g. BROKER_foreman__password=...) or foreman.passwordEnv${settings.passwordEnv ? ` (the variable ${settings.passwordEnv} is not set)` : ''}.`,
      );
    }
    const basic = Buffer.from(`${settings.username}:${password}`).toString('base64');
    registerSecret(password);
    registerSecret(basic);
    this.http = new HttpClient({
      provider: 'foreman',
      baseUrl: settings.baseUrl,
      headers: () => ({ Authorization: `Basic ${basic}` }),
      timeoutMs: toMs(settings.requestTimeout),
      retries: settings.retries,
      retryDelayMs: toMs(settings.retryDelay),
      tls: tlsOptionsOf(settings, directory),
      authHint: `check foreman.username (${settings.username}) and its password or token, and the user's Foreman roles`,
      // Foreman: {"error": {"message", "details"}} or {"error": {"full_messages": [...]}}.
      errorMessage: (json, text, status) => {
        const e = (json as { error?: { message?: unknown; details?: unknown; full_messages?: unknown } } | undefined)?.error;
        if (e && Array.isArray(e.full_messages) && e.full_messages.length) return e.full_messages.join('; ');
        if (e && typeof e.message === 'string') return typeof e.details === 'string' ? `${e.message}: ${e.details}` : e.message;
        return defaultErrorMessage(json, text, status);
      },
    });
  }

  static of(ctx: ProviderContext<ForemanInstance>): ForemanApi {
    return new ForemanApi(ctx.instanceSettings, ctx.signal, ctx.directory);
  }

  json<S extends z.ZodType>(
    method: string,
    path: string,
    schema: S,
    options: { query?: Record<string, string | number | undefined | readonly string[]>; json?: unknown } = {},
  ): Promise<z.output<S>> {
    return this.http.json(method, path, schema, { ...options, signal: this.signal });
  }

  /** Every result of a searched list (Foreman pages with `page`/`per_page`). */
  async list<S extends z.ZodType>(path: string, item: S, query: Record<string, string | number | readonly string[]>): Promise<z.output<S>[]> {
    const out: z.output<S>[] = [];
    for (let page = 1; page < 10_000; page++) {
      const answer = await this.json('GET', path, List(item), { query: { ...query, page, per_page: this.settings.perPage } });
      out.push(...answer.results);
      const total = answer.subtotal ?? answer.total ?? out.length;
      if (answer.results.length === 0 || out.length >= total) break;
    }
    return out;
  }

  async hostgroupId(ref: string | number): Promise<{ id: number; title: string }> {
    if (typeof ref === 'number') return { id: ref, title: String(ref) };
    const found = await this.list('/api/hostgroups', Hostgroup, { search: `title = "${ref.replace(/"/g, '')}"` });
    const match = found.find((g) => (g.title ?? g.name) === ref) ?? found.find((g) => g.name === ref);
    if (!match) {
      throw new UserInputError(
        `[foreman] no hostgroup \`${ref}\` is visible to ${this.settings.username}; list them with broker.providers() help for foreman and use the full title (e.g. parent/child).`,
      );
    }
    return { id: match.id, title: match.title ?? match.name };
  }

  host(id: number): Promise<Host> {
    return this.json('GET', `/api/hosts/${id}`, Host);
  }

  /** Deletes a host; already gone is fine. */
  async remove(id: number): Promise<void> {
    await this.http.request('DELETE', `/api/hosts/${id}`, { signal: this.signal, ok: (s) => (s >= 200 && s < 300) || s === 404 });
  }
}

/** A Foreman host name from a record name: lower-case letters, digits and -. */
export function hostNameOf(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return cleaned || `host-${randomUUID().slice(0, 8)}`;
}

/** Foreman's `2019-02-20 13:37:44 UTC` as ISO, or undefined. */
function isoOf(text: string | null | undefined): string | undefined {
  if (!text) return undefined;
  const t = Date.parse(text.replace(' UTC', 'Z').replace(' ', 'T'));
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

function paramsOf(host: Host): Record<string, string> {
  return Object.fromEntries((host.parameters ?? []).map((p) => [p.name, String(p.value)]));
}

/** Notes facts on the host's record at once, so a killed checkout leaves them for release. */
async function note(ctx: HostContext<ForemanInstance>, data: Partial<ForemanData>): Promise<void> {
  try {
    await ctx.checkpoint(data);
  } catch (error) {
    ctx.logger.warn('foreman: could not note the host on its record', { error: messageOf(error) });
  }
}

/** Waits until Foreman reports the build finished; throws on a failed build or at the deadline. */
async function waitForBuild(api: ForemanApi, id: number, ctx: ProviderContext<ForemanInstance>): Promise<Host> {
  const timeout = toMs(api.settings.buildTimeout);
  const interval = toMs(api.settings.pollInterval);
  const deadline = Date.now() + timeout;
  let last: Host | undefined;
  for (;;) {
    try {
      last = await api.host(id);
      if (last.build_status === BUILD.failed || last.build_status === BUILD.tokenExpired) {
        throw new ProviderError('foreman', `the build of ${last.name} failed: ${last.build_status_label ?? `build status ${last.build_status}`}`, {
          status: last.build_status ?? undefined,
        });
      }
      if (last.build === false && (last.build_status === undefined || last.build_status === null || last.build_status === BUILD.built)) return last;
    } catch (error) {
      if (!(error instanceof ProviderError) || !error.retryable) throw error;
      ctx.logger.warn(`foreman: polling host ${id} failed, will retry`, { error: error.message });
    }
    if (ctx.signal.aborted) throw new ProviderError('foreman', `waiting for the build of host ${id} was given up (the operation was aborted).`);
    if (Date.now() + interval > deadline) {
      throw new TimeoutError(
        `[foreman] the build of ${last?.name ?? `host ${id}`} did not finish within ${api.settings.buildTimeout} (foreman.buildTimeout; last status: ${last?.build_status_label ?? 'unknown'}). Raise foreman.buildTimeout, or look at the host in Foreman.`,
        timeout,
      );
    }
    await sleep(interval, ctx.signal);
  }
}

export default implementProvider(foreman, {
  async checkout(args, target, ctx) {
    const { record } = target;
    if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${record.name}`, ctx.signal);
    const api = ForemanApi.of(ctx);
    const group = await api.hostgroupId(args.hostgroup);
    const tags = standardTags(record);
    // Foreman's `params.NAME` search keeps only the part of NAME after its last dot, so the dotted
    // tag names cannot be searched: a dot-free copy of the record id can.
    const parameters = { ...args.parameters, ...tags, [SEARCHABLE_ID]: record.id };
    const organizationId = args.organizationId ?? api.settings.organizationId;
    const locationId = args.locationId ?? api.settings.locationId;
    const body = {
      host: {
        ...args.hostAttributes,
        name: args.name ?? hostNameOf(record.name),
        hostgroup_id: group.id,
        build: true,
        managed: true,
        ...(organizationId ? { organization_id: organizationId } : {}),
        ...(locationId ? { location_id: locationId } : {}),
        ...(args.computeResourceId ? { compute_resource_id: args.computeResourceId } : {}),
        ...(args.computeProfileId ? { compute_profile_id: args.computeProfileId } : {}),
        host_parameters_attributes: Object.entries(parameters).map(([name, value]) => ({ name, value })),
      },
    };
    const created = await api.json('POST', '/api/hosts', Host, { json: body });
    await note(ctx, { foremanId: created.id });
    ctx.logger.info(`foreman: created ${created.name} in ${group.title}, waiting for its build`, { id: created.id });

    let built: Host;
    try {
      built = await waitForBuild(api, created.id, ctx);
    } catch (error) {
      const mode = args.dangling ?? api.settings.dangling;
      const status = error instanceof ProviderError ? error.status : error instanceof TimeoutError ? 'TIMEOUT' : undefined;
      const why = messageOf(error).replace(/^\[foreman\] /, '');
      if (mode === 'keep') {
        // The Broker records it as kept; this record's release must not delete it.
        await note(ctx, { danglingHandled: true });
        throw new ProviderError(
          'foreman',
          `${why}; the host was kept in the inventory (marked kept): check it in when done, or delete host ${created.id} in Foreman.`,
          {
            cause: error,
            ...(status !== undefined ? { status } : {}),
            dangling: [{ name: created.name, hostname: created.name, providerId: String(created.id), data: { foremanId: created.id } }],
          },
        );
      }
      try {
        await api.remove(created.id);
      } catch (removeError) {
        throw new ProviderError('foreman', `${why}; deleting host ${created.id} failed too (${messageOf(removeError)}): delete it in Foreman by hand.`, {
          cause: error,
        });
      }
      await note(ctx, { danglingHandled: true });
      if (error instanceof TimeoutError) throw new TimeoutError(`${error.message} The host was deleted.`, error.timeoutMs, { cause: error });
      throw new ProviderError('foreman', `${why}; the host was deleted.`, { cause: error, ...(status !== undefined ? { status } : {}) });
    }

    const hostname = api.settings.address === 'ip' && built.ip ? built.ip : built.name;
    return {
      hostname,
      name: built.name,
      providerId: String(built.id),
      connection: defaultSshConnection(hostname, ctx),
      data: {
        foremanId: built.id,
        hostgroup: built.hostgroup_title ?? group.title,
        ...(built.ip ? { ip: built.ip } : {}),
        ...(built.operatingsystem_name ? { operatingsystem: built.operatingsystem_name } : {}),
      },
    };
  },

  // Given the record as stored now: what checkout noted (the host id, a handled failure) is on it.
  async release(record, ctx) {
    const api = ForemanApi.of(ctx);
    const data = record.data as ForemanData;
    if (data.danglingHandled) return;
    const id = Number(record.providerId ?? data.foremanId ?? NaN);
    if (Number.isInteger(id) && id > 0) return api.remove(id);
    // Killed before the host id was noted: find it by the record-id parameter (hosts made before
    // that parameter existed: among the user's hosts).
    let found = await api.list('/api/hosts', Host, { search: `params.${SEARCHABLE_ID} = "${record.id}"`, 'include[]': ['parameters'] });
    if (found.length === 0) found = await api.list('/api/hosts', Host, { search: `owner = "${api.settings.username}"`, 'include[]': ['parameters'] });
    // Only hosts whose parameter confirms the id: never trust the search alone with a delete.
    for (const host of found) if (paramsOf(host)[TAGS.id] === record.id) await api.remove(host.id);
  },

  async discover(ctx) {
    const api = ForemanApi.of(ctx);
    const hosts = await api.list('/api/hosts', Host, { search: `owner = "${api.settings.username}"`, 'include[]': ['parameters'] });
    return hosts.map((host) => {
      const params = paramsOf(host);
      const hostname = api.settings.address === 'ip' && host.ip ? host.ip : host.name;
      return {
        hostname,
        name: host.name,
        providerId: String(host.id),
        connection: defaultSshConnection(hostname, ctx),
        data: { foremanId: host.id, ...(host.hostgroup_title ? { hostgroup: host.hostgroup_title } : {}), ...(host.ip ? { ip: host.ip } : {}) },
        ...(params[TAGS.id] ? { id: params[TAGS.id] } : {}),
        ...(params[TAGS.broker] ? { brokerId: params[TAGS.broker] } : {}),
        owner: params[TAGS.owner] ?? host.owner_name ?? api.settings.username,
        ...(isoOf(host.created_at) ? { createdAt: isoOf(host.created_at)! } : {}),
        ...(params[TAGS.lease] ? { leaseExpires: params[TAGS.lease] } : {}),
        ...(host.hostgroup_title ? { recipe: { provider: 'foreman', instance: ctx.instance, args: { hostgroup: host.hostgroup_title } } } : {}),
      };
    });
  },

  async describe(ctx) {
    const api = ForemanApi.of(ctx);
    const groups = await api.list('/api/hostgroups', Hostgroup, {});
    return { hostgroups: groups.map((g) => g.title ?? g.name) };
  },
});
