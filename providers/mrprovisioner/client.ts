/**
 * The part of mr-provisioner's REST API v1 the provider uses, with zod schemas for its answers.
 * Errors come back as `{ error_type, errors: [...] }`; 401 has an empty body.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { lazySchema, z } from '../../lib/zod.js';
import { ProviderError, SettingsError } from '../../lib/errors.js';
import { HttpClient } from '../../lib/http.js';
import { tlsOptionsOf } from '../../lib/http-settings.js';
import type { ProviderContext } from '../../lib/provider.js';
import { registerSecret } from '../../lib/secrets.js';
import { toMs } from '../../lib/settings.js';
import type { MrProvisionerInstance, PowerState } from './definition.js';

export const Machine = lazySchema(() =>
  z.looseObject({
    id: z.number().int(),
    name: z.string(),
    hostname: z.string().nullish(),
    kernel_id: z.number().int().nullish(),
    initrd_id: z.number().int().nullish(),
    preseed_id: z.number().int().nullish(),
    kernel_opts: z.string().nullish(),
    netboot_enabled: z.boolean().nullish(),
  }),
);
export type Machine = z.infer<typeof Machine>;

export const Interface = lazySchema(() =>
  z.looseObject({
    id: z.number().int(),
    mac: z.string().nullish(),
    identifier: z.string().nullish(),
    configured_ipv4: z.string().nullish(),
    lease_ipv4: z.string().nullish(),
  }),
);

export const Assignee = lazySchema(() => z.looseObject({ id: z.number().int(), user: z.string(), reason: z.string().nullish() }));
export type Assignee = z.infer<typeof Assignee>;

export const Image = lazySchema(() =>
  z.looseObject({
    id: z.number().int(),
    name: z.string(),
    description: z.string().nullish(),
    type: z.string(),
    user: z.string().nullish(),
    known_good: z.boolean().nullish(),
    public: z.boolean().nullish(),
  }),
);
export type Image = z.infer<typeof Image>;

export const Preseed = lazySchema(() =>
  z.looseObject({
    id: z.number().int(),
    name: z.string(),
    description: z.string().nullish(),
    type: z.string().nullish(),
    user: z.string().nullish(),
  }),
);
export type Preseed = z.infer<typeof Preseed>;

const State = lazySchema(() => z.looseObject({ state: z.string().nullish() }));

/** A thin typed client over one mr-provisioner server. */
export class MrProvisionerClient {
  readonly http: HttpClient;
  readonly settings: MrProvisionerInstance;

  /** `directory`: the broker directory, against which a relative `ca_file` is resolved. */
  constructor(settings: MrProvisionerInstance, provider = 'mrprovisioner', directory = process.cwd()) {
    this.settings = settings;
    const token = settings.token ?? process.env[settings.tokenEnv];
    if (!token) {
      throw new SettingsError(
        `${provider}: no API token. Generate one in mr-provisioner (Account → Tokens) and put it in the environment variable ${settings.tokenEnv} (or set ${provider}.tokenEnv to the variable that holds it).`,
      );
    }
    registerSecret(token);
    this.http = new HttpClient({
      baseUrl: settings.url,
      provider,
      headers: () => ({ Authorization: `Bearer ${token}` }),
      timeoutMs: toMs(settings.requestTimeout),
      retries: settings.retries,
      tls: tlsOptionsOf(settings, directory),
      authHint: `check the token in ${settings.token ? `${provider}.token` : settings.tokenEnv} (tokens are made in mr-provisioner under Account → Tokens)`,
    });
  }

  /** Client for a provider context's instance settings. */
  static fromContext(ctx: ProviderContext<MrProvisionerInstance>): MrProvisionerClient {
    return new MrProvisionerClient(ctx.instanceSettings, ctx.provider, ctx.directory);
  }

  /** Reserves the first free machine matching `query`; undefined when none matches. */
  async reserve(query: string | undefined, reason: string, signal?: AbortSignal): Promise<Machine | undefined> {
    try {
      // POST is not retried on 5xx: a lost answer could leave a second machine reserved.
      return await this.http.json('POST', '/machine/reservation', Machine, { json: { query: query ?? null, reason }, signal });
    } catch (error) {
      if ((error as ProviderError).status === 404) return undefined;
      throw error;
    }
  }

  machines(options: { all?: boolean; query?: string; signal?: AbortSignal } = {}): Promise<Machine[]> {
    return this.http.json('GET', '/machine', z.array(Machine), {
      query: { show_all: options.all ? 'true' : undefined, q: options.query },
      signal: options.signal,
    });
  }

  machine(id: number, signal?: AbortSignal): Promise<Machine> {
    return this.http.json('GET', `/machine/${id}`, Machine, { signal });
  }

  updateMachine(id: number, fields: Record<string, unknown>, signal?: AbortSignal): Promise<Machine> {
    return this.http.json('PUT', `/machine/${id}`, Machine, { json: fields, signal });
  }

  interfaces(id: number, signal?: AbortSignal) {
    return this.http.json('GET', `/machine/${id}/interface`, z.array(Interface), { signal });
  }

  /** This user's assignment of a machine; undefined when there is none (404). */
  async selfAssignee(id: number, signal?: AbortSignal): Promise<Assignee | undefined> {
    try {
      return await this.http.json('GET', `/machine/${id}/assignee/self`, Assignee, { signal });
    } catch (error) {
      if ((error as ProviderError).status === 404) return undefined;
      throw error;
    }
  }

  /** Gives a machine back. Already given back (404) counts as done. */
  async unassign(id: number, signal?: AbortSignal): Promise<void> {
    await this.http.request('DELETE', `/machine/${id}/assignee/self`, { signal, ok: (s) => (s >= 200 && s < 300) || s === 404 });
  }

  async power(id: number, state: PowerState, signal?: AbortSignal): Promise<void> {
    await this.http.request('POST', `/machine/${id}/power`, { json: { state }, signal, idempotent: true });
  }

  async provision(id: number, signal?: AbortSignal): Promise<string | undefined> {
    const res = await this.http.request('POST', `/machine/${id}/state`, { json: { state: 'provision' }, signal });
    return res.text ? (this.http.parse(`POST /machine/${id}/state`, res.text, State).state ?? undefined) : undefined;
  }

  images(signal?: AbortSignal): Promise<Image[]> {
    return this.http.json('GET', '/image', z.array(Image), { query: { show_all: 'true' }, signal });
  }

  preseeds(signal?: AbortSignal): Promise<Preseed[]> {
    return this.http.json('GET', '/preseed', z.array(Preseed), { query: { show_all: 'true' }, signal });
  }

  /** Uploads an image: multipart with the metadata as JSON in field `q` and the file in `file`. */
  async uploadImage(
    args: { path: string; type: string; description?: string; public?: boolean; knownGood?: boolean; filename?: string },
    signal?: AbortSignal,
  ): Promise<Image> {
    let content: Buffer;
    try {
      content = await readFile(args.path);
    } catch (error) {
      throw new ProviderError(this.http.provider, `cannot read the image file ${args.path}: ${(error as Error).message}; check the path.`, { cause: error });
    }
    const meta: Record<string, unknown> = { type: args.type };
    if (args.description !== undefined) meta.description = args.description;
    if (args.public !== undefined) meta.public = args.public;
    if (args.knownGood !== undefined) meta.known_good = args.knownGood;
    const form = new FormData();
    form.set('q', JSON.stringify(meta));
    form.set('file', new Blob([content]), args.filename ?? basename(args.path));
    // An upload is not repeated on 5xx: it could create the image twice.
    const res = await this.http.request('POST', '/image', { body: form, signal, headers: { Accept: 'application/json' } });
    return this.http.parse('POST /image', res.text, Image);
  }
}
