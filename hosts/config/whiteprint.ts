/**
 * Whiteprints (as marchitect has them): a class that knows how to bring one piece of a host into
 * shape in any mode (`install`, `update`, `clean`, `start`, `stop`, or your own), and how to
 * check that it is in shape (`validate`).
 * @module
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { z } from 'zod';
import { UserInputError } from '../../lib/errors.js';
import { formatIssues } from '../../lib/settings.js';
import type { ExecOptions, Result } from '../result.js';
import type { Session } from '../session.js';
import type { Facts } from './facts.js';
import { commandError, ensureFile, type Attributes } from './remote.js';
import { resolveResource } from './resources.js';
import { expandHome, type ConfigTarget } from './target.js';
import { renderTemplate } from './templates.js';

/** A whiteprint's configuration: a plain object. */
export type Config = Record<string, unknown>;

/** `execute` changes the host; `validate` only looks. */
export type Phase = 'execute' | 'validate';

/** A whiteprint (or prefab) used inside another one: its class and its config. */
export interface PrefabSpec {
  readonly whiteprint: WhiteprintClass;
  readonly config: Config;
}

/** What the runner passes to a whiteprint's constructor (opaque to whiteprint authors). */
export interface WhiteprintInit {
  /** @internal */
  readonly state: RunState;
}

/** The class of a whiteprint: constructible by the runner, with its static parts. */
export interface WhiteprintClass<W extends Whiteprint<object> = Whiteprint<object>> {
  new (init: WhiteprintInit): W;
  /** Class name; apply-time config may be keyed by it. */
  readonly name: string;
  /** Config defaults (the lowest precedence). */
  readonly defaults?: object;
  /** Prefabs run before the whiteprint's own work. */
  readonly head?: readonly PrefabSpec[];
  /** Prefabs run after the whiteprint's own work. */
  readonly tail?: readonly PrefabSpec[];
  /** True for prefabs: they find resources in the folder of the whiteprint that uses them. */
  readonly usesParentResources?: boolean;
}

/** The config type of a whiteprint instance type. */
export type ConfigOf<W> = W extends Whiteprint<infer C> ? C : never;

/** What a step or `use` may pass as config: any part of the whiteprint's config. */
export type ConfigInput<W> = Partial<ConfigOf<W>>;

/** Options for {@link Whiteprint.exec}. */
export interface WhiteprintExecOptions extends ExecOptions {
  /** Return a non-zero status instead of throwing a CommandError. */
  errorOk?: boolean;
  /**
   * Whether running the command counts as a change (reported as `changed`). Default `true`:
   * hostbroker cannot see what a command did. Pass `false` for commands that only look, or a
   * function of the result (like Ansible's `changed_when`).
   */
  changed?: boolean | ((result: Result) => boolean);
}

/** Options for the upload helpers. */
export interface UploadOptions extends Attributes {
  /** Extra template variables over the whiteprint's config (templates only). */
  vars?: Config;
}

/** @internal Everything a running whiteprint needs; one per whiteprint instance. */
export interface RunState {
  target: ConfigTarget;
  facts: Facts;
  resourcePaths: readonly string[];
  phase: Phase;
  mode: string;
  /** Config after merging, before the schema parsed it. */
  rawConfig: Config;
  config?: Config;
  /** Template variables inherited from the whiteprint that uses this one (prefabs see their user's config). */
  inheritedVars: Config;
  /** Folder name under resource paths (the whiteprint's name, or its user's for prefabs). */
  resourceName?: string;
  parentResourceName?: string;
  /** Where this whiteprint sits, for messages: `web > apt`. */
  trail: string[];
  changes: string[];
  drift: string[];
}

const STATES = new WeakMap<Whiteprint<object>, RunState>();

/**
 * Base class of whiteprints. Subclass it, set `name`, optionally `static defaults`, a zod
 * `schema`, `static head` / `static tail` prefabs, and override `execute(mode)` and
 * `validate(mode)`.
 *
 * ```ts
 * const GreetingConfig = z.object({ who: z.string(), path: z.string() });
 * class Greeting extends Whiteprint<z.output<typeof GreetingConfig>> {
 *   readonly name = 'greeting';
 *   static override defaults = { path: '~/greeting.txt' };
 *   override readonly schema = GreetingConfig;
 *   override async execute(mode: string) {
 *     if (mode === 'install') await this.uploadTemplateString('hello {{ who }} from {{ target.hostname }}\n', this.cfg.path);
 *   }
 * }
 * ```
 */
export abstract class Whiteprint<C extends object = Config> {
  /** Short name; also the folder its resource files are looked up in. */
  abstract readonly name: string;
  /** Config defaults (lowest precedence: plan defaults, step config and apply-time config win). */
  static defaults: object = {};
  /** Prefabs applied before `execute`/`validate` (in every mode; in `clean` they run last). */
  static head: readonly PrefabSpec[] = [];
  /** Prefabs applied after `execute`/`validate` (in `clean` they run first). */
  static tail: readonly PrefabSpec[] = [];
  /** Schema the merged config must satisfy; its output (with its defaults) becomes `this.cfg`. */
  readonly schema?: z.ZodType<C>;

  constructor(init: WhiteprintInit) {
    STATES.set(this, init.state);
  }

  /** Brings the host into shape for `mode`. Called by the site plan; override it. */
  async execute(mode: string): Promise<void> {
    void mode;
  }

  /** Checks the host for `mode` without changing it: call `this.drift()` for what is wrong. Override it. */
  async validate(mode: string): Promise<void> {
    void mode;
  }

  /** Prefabs computed from the config, run after `static head`. Override it. */
  computeHead(): PrefabSpec[] {
    return [];
  }

  /** Prefabs computed from the config, run after `static tail`. Override it. */
  computeTail(): PrefabSpec[] {
    return [];
  }

  private get state(): RunState {
    const s = STATES.get(this);
    if (!s)
      throw new UserInputError('this whiteprint is not running: whiteprints are run by a SitePlan (host.apply) or by `this.use()` in another whiteprint.');
    return s;
  }

  /** The merged, schema-checked config. */
  get cfg(): C {
    const { config } = this.state;
    if (!config)
      throw new UserInputError(
        `the config of whiteprint \`${this.name}\` is not ready in its constructor; read this.cfg in execute(), validate() or computeHead()/computeTail().`,
      );
    return config as C;
  }

  /** Facts about the host (gathered once per host). */
  get target(): Facts {
    return this.state.facts;
  }

  /** The host being configured. */
  get host(): ConfigTarget {
    return this.state.target;
  }

  /** The mode being run. */
  get mode(): string {
    return this.state.mode;
  }

  /** `execute` or `validate`. */
  get phase(): Phase {
    return this.state.phase;
  }

  private get session(): Session {
    return this.state.target.session;
  }

  /**
   * Runs a shell command on the host. A non-zero status throws a CommandError carrying the
   * command and its output, unless `errorOk`. Counts as a change unless `changed` says otherwise.
   */
  protected async exec(command: string, options: WhiteprintExecOptions = {}): Promise<Result> {
    const { errorOk, changed, ...execOptions } = options;
    const r = await this.session.run(command, execOptions);
    if (r.status !== 0 && !errorOk) throw commandError(`${this.state.trail.join(' > ')}: a command failed`, r, this.session);
    const counts = typeof changed === 'function' ? changed(r) : (changed ?? true);
    if (counts && this.phase === 'execute') this.state.changes.push(`ran \`${oneLine(command)}\``);
    return r;
  }

  /** Records a change the whiteprint made by other means. */
  protected changed(description: string): void {
    this.state.changes.push(description);
  }

  /** Records something `validate` found wrong; the step fails with every drift listed. */
  protected drift(description: string): void {
    this.state.drift.push(description);
  }

  /** A remote path with `~/` expanded to the login user's home. */
  protected remotePath(path: string): string {
    return expandHome(path, this.target.home);
  }

  /**
   * Makes a remote file hold these bytes: compares checksums and writes only when they differ.
   * In `validate`, writes nothing and records drift instead. Resolves to whether anything changed.
   */
  protected async uploadBytes(data: string | Buffer, remote: string, options: Attributes = {}): Promise<boolean> {
    const path = this.remotePath(remote);
    const validating = this.phase === 'validate';
    const changes = await ensureFile(this.session, path, Buffer.from(data), options, { dryRun: validating });
    return this.note(changes);
  }

  /** Uploads a local file found under the plan's resource paths (see {@link resource}). */
  protected async uploadFile(local: string, remote: string, options: Attributes = {}): Promise<boolean> {
    return this.uploadBytes(await readFile(this.resource(local)), remote, options);
  }

  /** Renders a template file found under the resource paths with the config and `target`, and uploads it. */
  protected async uploadTemplate(local: string, remote: string, options: UploadOptions = {}): Promise<boolean> {
    const file = this.resource(local);
    const source = await readFile(file, 'utf8');
    return this.uploadBytes(this.render(source, options.vars, file), remote, options);
  }

  /** Renders a template string with the config and `target`, and uploads it. */
  protected async uploadTemplateString(template: string, remote: string, options: UploadOptions = {}): Promise<boolean> {
    return this.uploadBytes(this.render(template, options.vars), remote, options);
  }

  /** Renders a template with the config, `target` (the facts), and `vars` over them. */
  protected render(template: string, vars: Config = {}, name = `a template of whiteprint \`${this.name}\``): string {
    return renderTemplate(template, { ...this.templateVars(), ...vars }, { name });
  }

  /**
   * What templates see: the config of the whiteprint using this one (for prefabs), the merged
   * config including keys the schema does not name (plan-wide defaults), the parsed config, and `target`.
   */
  protected templateVars(): Config {
    const s = this.state;
    return { ...s.inheritedVars, ...s.rawConfig, ...(this.cfg as Config), target: this.target };
  }

  /** Reads a remote file. */
  protected async downloadBytes(remote: string): Promise<Buffer> {
    return this.session.read(this.remotePath(remote));
  }

  /** Copies a remote file to a local path. */
  protected async download(remote: string, localPath: string): Promise<void> {
    await writeFile(localPath, await this.downloadBytes(remote));
  }

  /**
   * Local path of a resource file: `<resourcePath>/<whiteprint name>/<file>` for the first
   * resource path that has it (prefabs look in the folder of the whiteprint using them).
   */
  protected resource(file: string): string {
    const s = this.state;
    return resolveResource(file, s.resourceName ?? this.name, s.resourcePaths);
  }

  /**
   * Runs another whiteprint here, in the same phase (execute or validate), with its own defaults
   * under `config`. Its changes and drift count as this whiteprint's. Resolves to whether it changed anything.
   */
  protected async use<W extends Whiteprint<object>>(mode: string, whiteprint: WhiteprintClass<W>, config: ConfigInput<W> = {}): Promise<boolean> {
    const s = this.state;
    const child = await runWhiteprint(whiteprint, [config as Config], {
      target: s.target,
      facts: s.facts,
      resourcePaths: s.resourcePaths,
      phase: s.phase,
      mode,
      trail: s.trail,
      parentResourceName: s.resourceName ?? this.name,
      inheritedVars: {},
    });
    s.changes.push(...child.changes);
    s.drift.push(...child.drift);
    return child.changes.length > 0 || child.drift.length > 0;
  }

  private note(changes: string[]): boolean {
    if (this.phase === 'validate') this.state.drift.push(...changes);
    else this.state.changes.push(...changes);
    return changes.length > 0;
  }
}

/** A prefab spec for `static head` / `static tail` / `computeHead()`: a whiteprint and its config. */
export function prefab<W extends Whiteprint<object>>(whiteprint: WhiteprintClass<W>, config: ConfigInput<W>): PrefabSpec {
  return { whiteprint: whiteprint as unknown as WhiteprintClass, config: config as Config };
}

/** What running one whiteprint (with its prefabs) gave. */
export interface WhiteprintOutcome {
  name: string;
  changes: string[];
  drift: string[];
}

/** @internal Where and how a whiteprint runs. */
export interface RunContext {
  target: ConfigTarget;
  facts: Facts;
  resourcePaths: readonly string[];
  phase: Phase;
  mode: string;
  trail: string[];
  parentResourceName?: string;
  /** Template variables of the whiteprint using this one. */
  inheritedVars?: Config;
  /** Label for config messages, e.g. `step g1`. */
  stepLabel?: string;
}

/** Modes that undo: prefabs and own work run in reverse order. */
const REVERSED_MODES = new Set(['clean']);

/**
 * @internal Runs a whiteprint: merges its config over its defaults, checks the schema, then runs
 * head prefabs, its own execute/validate, and tail prefabs (reversed in `clean`).
 */
export async function runWhiteprint(whiteprint: WhiteprintClass, layers: readonly Config[], ctx: RunContext): Promise<WhiteprintOutcome> {
  const rawConfig = mergeConfig([(whiteprint.defaults ?? {}) as Config, ...layers]);
  const state: RunState = {
    target: ctx.target,
    facts: ctx.facts,
    resourcePaths: ctx.resourcePaths,
    phase: ctx.phase,
    mode: ctx.mode,
    rawConfig,
    inheritedVars: ctx.inheritedVars ?? {},
    trail: ctx.trail,
    changes: [],
    drift: [],
  };
  const instance = new whiteprint({ state });
  const name = instance.name || whiteprint.name;
  state.trail = [...ctx.trail, name];
  state.resourceName = whiteprint.usesParentResources && ctx.parentResourceName ? ctx.parentResourceName : name;
  state.config = parseConfig(instance, rawConfig, ctx.stepLabel ?? state.trail.join(' > '));

  const head = [...(whiteprint.head ?? []), ...instance.computeHead()];
  const tail = [...(whiteprint.tail ?? []), ...instance.computeTail()];
  const runPrefab = async (p: PrefabSpec): Promise<void> => {
    const out = await runWhiteprint(p.whiteprint, [p.config], {
      ...ctx,
      trail: state.trail,
      parentResourceName: state.resourceName,
      // biome-ignore lint/complexity/useLiteralKeys: a protected method, called from outside the class on purpose
      inheritedVars: instance['templateVars'](),
      stepLabel: `${state.trail.join(' > ')} > ${p.whiteprint.name}`,
    });
    state.changes.push(...out.changes.map((c) => `${out.name}: ${c}`));
    state.drift.push(...out.drift.map((d) => `${out.name}: ${d}`));
  };
  const own = async (): Promise<void> => {
    if (ctx.phase === 'execute') await instance.execute(ctx.mode);
    else await instance.validate(ctx.mode);
  };
  const parts: Array<() => Promise<void>> = [...head.map((p) => () => runPrefab(p)), own, ...tail.map((p) => () => runPrefab(p))];
  if (REVERSED_MODES.has(ctx.mode)) parts.reverse();
  for (const part of parts) await part();
  return { name, changes: state.changes, drift: state.drift };
}

function parseConfig(instance: Whiteprint<object>, raw: Config, where: string): Config {
  const schema = instance.schema;
  if (!schema) return raw;
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new UserInputError(
      `the config of whiteprint \`${instance.name}\` (${where}) is not valid: ${formatIssues(parsed.error)}. Fix the defaults, the step's config or the config given at apply time.`,
    );
  }
  return parsed.data as Config;
}

/** Deep-merges config layers, later ones winning; `undefined` values do not override. */
export function mergeConfig(layers: readonly Config[]): Config {
  let out: Config = {};
  for (const layer of layers) out = mergeTwo(out, layer);
  return out;
}

function mergeTwo(a: Config, b: Config): Config {
  const out: Config = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    const prev = out[k];
    out[k] = isPlain(prev) && isPlain(v) ? mergeTwo(prev, v) : v;
  }
  return out;
}

function isPlain(v: unknown): v is Config {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

function oneLine(command: string): string {
  const first = command.split('\n')[0]!;
  return first.length > 120 || command.includes('\n') ? `${first.slice(0, 117)}…` : first;
}
