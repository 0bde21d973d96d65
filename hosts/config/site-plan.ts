/**
 * Site plans (as marchitect has them): the ordered whiteprints that make one kind of host, with
 * config layered from whiteprint defaults up to what is given at apply time.
 * @module
 */
import { BrokerError, PartialFailureError, UserInputError, asError } from '../../lib/errors.js';
import type { ExecOptions, Result } from '../result.js';
import { DriftError } from './errors.js';
import { gatherFacts, type Facts } from './facts.js';
import { commandError } from './remote.js';
import { labelOf, type ConfigTarget } from './target.js';
import { runWhiteprint, type Config, type ConfigInput, type Phase, type Whiteprint, type WhiteprintClass } from './whiteprint.js';

/** One step of a plan: a whiteprint, its config, and an alias to address it by. */
export interface PlanStep<W extends Whiteprint<object> = Whiteprint<object>> {
  whiteprint: WhiteprintClass<W>;
  /** Config for this step (over the whiteprint's defaults and the plan's defaults). */
  config?: ConfigInput<W>;
  /** Another name for the step: in reports and as a key of apply-time config. */
  alias?: string;
}

/** Steps typed per whiteprint: each step's config is checked against its own whiteprint. */
export type PlanSteps<T extends readonly Whiteprint<object>[]> = { [K in keyof T]: PlanStep<T[K]> };

/** Options for `new SitePlan()`. */
export interface SitePlanOptions {
  /** Config every step gets (over whiteprint defaults, under step config). */
  defaults?: Config;
  /** Where local resource files are found: `<path>/<whiteprint name>/<file>`, first match wins. */
  resourcePaths?: readonly string[];
}

/**
 * Config given at apply time, keyed by a step's alias, its whiteprint's class name or its
 * whiteprint's `name`. A class-name key applies to every step of that class; an alias key only
 * to its step and wins over the class key.
 */
export type ApplyConfig = Record<string, Config>;

/** How a step went. */
export type StepStatus = 'changed' | 'unchanged' | 'failed' | 'skipped';

/** The report of one step. */
export interface StepReport {
  /** Position in the plan, from 0. */
  index: number;
  /** The alias, else the whiteprint's name. */
  step: string;
  /** The whiteprint's name. */
  whiteprint: string;
  alias?: string;
  status: StepStatus;
  /** What the step changed (execute) — empty when unchanged. */
  changes: string[];
  /** What validate found wrong — empty when the host is as wanted. */
  drift: string[];
  /** Why the step failed (a CommandError carries the command and its output). */
  error?: Error;
  startedAt: string;
  durationMs: number;
}

/** The report of applying or validating a plan on one host. */
export class PlanReport {
  constructor(
    /** `execute` (host.apply) or `validate`. */
    readonly phase: Phase,
    readonly mode: string,
    /** The host's name. */
    readonly host: string,
    readonly steps: StepReport[],
    readonly durationMs: number,
  ) {}

  /** True when no step failed. */
  get ok(): boolean {
    return this.steps.every((s) => s.status !== 'failed');
  }

  /** True when some step changed something. */
  get changed(): boolean {
    return this.steps.some((s) => s.status === 'changed');
  }

  /** The steps that failed. */
  get failed(): StepReport[] {
    return this.steps.filter((s) => s.status === 'failed');
  }

  /** Throws the failure (one step: its error; several: a PartialFailureError listing them). */
  throwIfFailed(): this {
    const failed = this.failed;
    if (failed.length === 1) throw failed[0]!.error!;
    if (failed.length) {
      throw new PartialFailureError(
        `${this.phase === 'validate' ? 'validating' : 'applying'} the plan (mode ${this.mode}) on ${this.host} failed in ${failed.length} step(s):`,
        failed.map((s) => ({ target: s.step, error: s.error! })),
      );
    }
    return this;
  }

  /** One line per step, for logs and test output. */
  toString(): string {
    const lines = this.steps.map((s) => {
      const detail = s.drift.length
        ? `: ${s.drift.join('; ')}`
        : s.status === 'failed'
          ? `: ${s.error?.message.split('\n')[0]}`
          : s.changes.length
            ? ` (${s.changes.length} change${s.changes.length > 1 ? 's' : ''})`
            : '';
      return `  ${s.step}: ${s.status} in ${s.durationMs} ms${detail}`;
    });
    return `${this.phase === 'validate' ? 'validate' : 'apply'} ${this.mode} on ${this.host}: ${this.ok ? 'ok' : 'FAILED'}\n${lines.join('\n')}`;
  }

  toJSON(): Record<string, unknown> {
    return {
      phase: this.phase,
      mode: this.mode,
      host: this.host,
      ok: this.ok,
      changed: this.changed,
      durationMs: this.durationMs,
      steps: this.steps.map(({ error, ...s }) => ({
        ...s,
        ...(error ? { error: BrokerError.isInstance(error) ? error.toJSON() : { name: error.name, message: error.message } } : {}),
      })),
    };
  }
}

/** Options for {@link SitePlan.oneOffExec}. */
export interface OneOffExecOptions extends ExecOptions {
  /** Return a non-zero status instead of throwing a CommandError. */
  errorOk?: boolean;
}

/**
 * An ordered list of whiteprints for one kind of host.
 *
 * ```ts
 * const plan = new SitePlan([{ whiteprint: Greeting, config: { who: 'x' }, alias: 'g1' }], { resourcePaths: ['./resources'] });
 * const report = await host.apply(plan, 'install');
 * ```
 */
export class SitePlan<T extends readonly Whiteprint<object>[] = Whiteprint<object>[]> {
  readonly steps: readonly PlanStep[];
  readonly defaults: Config;
  readonly resourcePaths: readonly string[];

  constructor(steps: PlanSteps<T>, options: SitePlanOptions = {}) {
    if (!Array.isArray(steps)) throw new UserInputError('a SitePlan needs an array of steps, e.g. [{ whiteprint: Greeting, config: { who: "x" } }].');
    const list = steps as readonly PlanStep[];
    list.forEach((s, i) => {
      if (typeof s?.whiteprint !== 'function')
        throw new UserInputError(`step ${i} of the site plan has no whiteprint class; write { whiteprint: MyWhiteprint, config: {...} }.`);
    });
    const aliases = list.flatMap((s) => (s.alias ? [s.alias] : []));
    const dup = aliases.find((a, i) => aliases.indexOf(a) !== i);
    if (dup) throw new UserInputError(`the alias \`${dup}\` is used by more than one step; aliases must be unique.`);
    this.steps = [...list];
    this.defaults = options.defaults ?? {};
    this.resourcePaths = [...(options.resourcePaths ?? [])];
  }

  /**
   * Runs every step's whiteprint in `mode` (`clean` runs the steps in reverse order). Stops at the
   * first failing step; later steps are `skipped`. Never throws for a failed step: read `ok`,
   * or call `report.throwIfFailed()`.
   */
  apply(target: ConfigTarget, mode: string, config: ApplyConfig = {}): Promise<PlanReport> {
    return this.run(target, 'execute', mode, config);
  }

  /** Runs every step's validation in `mode`; every step runs, drift fails a step. */
  validate(target: ConfigTarget, mode: string, config: ApplyConfig = {}): Promise<PlanReport> {
    return this.run(target, 'validate', mode, config);
  }

  /** Runs one command on a host outside any step; a non-zero status throws unless `errorOk`. */
  async oneOffExec(target: ConfigTarget, command: string, options: OneOffExecOptions = {}): Promise<Result> {
    const { errorOk, ...rest } = options;
    const r = await target.session.run(command, rest);
    if (r.status !== 0 && !errorOk) throw commandError(`a one-off command failed`, r, target.session);
    return r;
  }

  private async run(target: ConfigTarget, phase: Phase, mode: string, config: ApplyConfig): Promise<PlanReport> {
    if (typeof mode !== 'string' || !mode) throw new UserInputError('a mode is needed, e.g. "install", "update", "clean", "start", "stop".');
    const started = Date.now();
    const host = labelOf(target);
    const order = this.steps.map((step, index) => ({ step, index }));
    if (mode === 'clean') order.reverse();
    const reports: StepReport[] = [];
    let facts: Facts | undefined;
    let stop = false;
    for (const { step, index } of order) {
      const probe = stepNames(step);
      const base = {
        index,
        step: step.alias ?? probe.name,
        whiteprint: probe.name,
        ...(step.alias ? { alias: step.alias } : {}),
        changes: [] as string[],
        drift: [] as string[],
      };
      const startedAt = new Date();
      if (stop) {
        reports.push({ ...base, status: 'skipped', startedAt: startedAt.toISOString(), durationMs: 0 });
        continue;
      }
      try {
        facts ??= await gatherFacts(target);
        const layers = [this.defaults, (step.config ?? {}) as Config, ...applyLayers(step, probe.name, config)];
        const out = await runWhiteprint(step.whiteprint, layers, {
          target,
          facts,
          resourcePaths: this.resourcePaths,
          phase,
          mode,
          trail: [],
          stepLabel: `step ${index}${step.alias ? ` (${step.alias})` : ''}`,
        });
        const durationMs = Date.now() - startedAt.getTime();
        if (out.drift.length) {
          const error = new DriftError(`${base.step} on ${host} (mode ${mode}) is not as wanted:\n${out.drift.map((d) => `  - ${d}`).join('\n')}`, out.drift);
          reports.push({ ...base, changes: out.changes, drift: out.drift, status: 'failed', error, startedAt: startedAt.toISOString(), durationMs });
        } else {
          reports.push({ ...base, changes: out.changes, status: out.changes.length ? 'changed' : 'unchanged', startedAt: startedAt.toISOString(), durationMs });
        }
      } catch (error) {
        reports.push({ ...base, status: 'failed', error: asError(error), startedAt: startedAt.toISOString(), durationMs: Date.now() - startedAt.getTime() });
        if (phase === 'execute') stop = true;
      }
    }
    reports.sort((a, b) => (mode === 'clean' ? b.index - a.index : a.index - b.index));
    return new PlanReport(phase, mode, host, reports, Date.now() - started);
  }
}

/** The whiteprint name of a step without running it (the class's instance field). */
function stepNames(step: PlanStep): { name: string } {
  try {
    const probe = new step.whiteprint({ state: undefined as never });
    return { name: probe.name || step.whiteprint.name };
  } catch {
    return { name: step.whiteprint.name };
  }
}

/** Apply-time config for a step: class-name and whiteprint-name keys, then the alias key. */
function applyLayers(step: PlanStep, name: string, config: ApplyConfig): Config[] {
  const layers: Config[] = [];
  for (const key of new Set([step.whiteprint.name, name])) {
    const layer = config[key];
    if (layer) layers.push(layer);
  }
  const byAlias = step.alias ? config[step.alias] : undefined;
  if (byAlias) layers.push(byAlias);
  return layers;
}

/** Applies a plan to a host (what `host.apply` does). */
export function applyPlan(target: ConfigTarget, plan: SitePlan, mode: string, config?: ApplyConfig): Promise<PlanReport> {
  return plan.apply(target, mode, config);
}

/** Validates a plan on a host (what `host.validate` does). */
export function validatePlan(target: ConfigTarget, plan: SitePlan, mode: string, config?: ApplyConfig): Promise<PlanReport> {
  return plan.validate(target, mode, config);
}
