/**
 * Runs a validated scenario: steps in order, each with its `when`, `loop`, `retry`, `timeout`,
 * `capture` and error handling, then checks in the scenario's own hosts (and destroys its
 * deployments) unless a step kept them. A killed run leaves records like any killed process:
 * `hostbroker checkin` and `reap` finish them.
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { asError, BrokerError, TimeoutError } from '../errors.js';
import { ScenarioError } from './errors.js';
import { toMs } from '../settings.js';
import * as hostActions from './actions/hosts.js';
import * as otherActions from './actions/other.js';
import { ScenarioExit } from './actions/other.js';
import type { ActionName, ScenarioFile, Step } from './schema.js';
import { sliceOf } from './select.js';
import type { ActionCall, ScenarioState } from './state.js';
import { evaluate, holds, plain, render, type Scope } from './template.js';

const ACTIONS: Record<ActionName, (call: ActionCall) => Promise<unknown>> = {
  checkout: hostActions.checkout,
  checkin: hostActions.checkin,
  run: hostActions.run,
  upload: hostActions.upload,
  download: hostActions.download,
  apply: hostActions.apply,
  execute: otherActions.execute,
  up: otherActions.up,
  destroy: otherActions.destroy,
  providers: otherActions.providers,
  inventory: otherActions.inventory,
  output: otherActions.output,
  exit: otherActions.exit,
  run_scenarios: otherActions.runScenarios,
};

/** How a step went. */
export type StepStatus = 'pending' | 'running' | 'completed' | 'skipped' | 'failed';

/** What is known of a step, in the scope as `steps.<name>` and `previous_step`, and in results. */
export interface StepMemory {
  name: string;
  action: ActionName;
  status: StepStatus;
  output?: unknown;
  /** The error of a failed step, as JSON (code, message, fields). */
  error?: Record<string, unknown>;
  /** Tries made (more than 1 with `retry`). */
  attempts: number;
  durationMs: number;
}

/** What a run reports as it goes. */
export type ScenarioEvent =
  | { type: 'step'; index: number; total: number; step: StepMemory }
  | { type: 'retry'; step: string; attempt: number; error: string }
  | { type: 'cleanup'; checkedIn: number; kept: number; destroyed: number };

function errorJSON(error: unknown): Record<string, unknown> {
  const e = asError(error);
  return BrokerError.isInstance(e) ? e.toJSON() : { name: e.name, message: e.message };
}

/** Runs `fn` with a signal that ends at the step's timeout (a TimeoutError naming the step). */
async function withTimeout<T>(ms: number | undefined, outer: AbortSignal | undefined, where: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const stop = (): void => controller.abort(outer?.reason);
  outer?.addEventListener('abort', stop, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    if (ms === undefined) return;
    timer = setTimeout(() => {
      const error = new TimeoutError(`step "${where}" did not finish within ${ms} ms (its \`timeout\`); raise it or look at what the step waits for.`, ms);
      controller.abort(error);
      reject(error);
    }, ms);
  });
  try {
    return await Promise.race([fn(controller.signal), timedOut]);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', stop);
  }
}

export class ScenarioRun {
  readonly steps: StepMemory[] = [];
  readonly #memory = new Map<string, StepMemory>();
  readonly #captured: Scope = {};
  /** The last step that finished (`previous_step`). */
  #previous: StepMemory | null = null;

  constructor(
    readonly scenario: ScenarioFile,
    readonly state: ScenarioState,
    readonly variables: Record<string, unknown>,
    readonly onEvent: (event: ScenarioEvent) => void,
  ) {}

  /** The scope templates see now. */
  scope(extra: Scope = {}): Scope {
    const memories = [...this.#memory.values()];
    return {
      ...this.variables,
      ...this.#captured,
      steps: Object.fromEntries(memories.map((m) => [m.name, m])),
      previous_step: this.#previous,
      scenario_inventory: [...this.state.hosts.values()].map((h) => plain(h.record)),
      now: new Date().toISOString(),
      ...extra,
    };
  }

  /** Runs the steps in order; ScenarioExit and ScenarioError end it. */
  async runSteps(steps: readonly Step[], parent?: string): Promise<void> {
    for (const [index, step] of steps.entries()) {
      const where = parent ? `${parent} > ${step.name}` : step.name;
      if (this.state.signal?.aborted) {
        throw new ScenarioError(`stopped before step "${where}": ${asError(this.state.signal.reason).message}`, { file: this.state.file, step: where });
      }
      const memory = await this.#runStep(step, where, index, steps.length);
      if (memory.status !== 'failed') continue;
      if (step.on_error === 'continue' || (step.on_error === undefined && !step.exit_on_error)) continue;
      if (Array.isArray(step.on_error)) {
        // Recovery steps handle the failure; the scenario goes on unless one of them exits or fails.
        await this.runSteps(step.on_error, where);
        continue;
      }
      throw new ScenarioError(`step "${where}" failed: ${String(memory.error?.message ?? 'unknown error')}`, { file: this.state.file, step: where });
    }
  }

  async #runStep(step: Step, where: string, index: number, total: number): Promise<StepMemory> {
    const memory: StepMemory = { name: step.name, action: step.action, status: 'running', attempts: 0, durationMs: 0 };
    const started = Date.now();
    this.#memory.delete(step.name);
    this.#memory.set(step.name, memory);
    this.steps.push(memory);
    try {
      if (step.loop) {
        const result = await this.#loop(step, where, memory);
        memory.status = result.ran ? 'completed' : 'skipped';
        memory.output = result.output;
      } else if (!holds(step.when, this.scope({ step: memory }), where)) {
        memory.status = 'skipped';
      } else {
        memory.output = await this.#attempts(step, where, this.scope({ step: memory }), memory);
        memory.status = 'completed';
      }
      if (step.capture && memory.status === 'completed') {
        this.#captured[step.capture.as] = step.capture.transform ? evaluate(step.capture.transform, this.scope({ step: memory }), where) : memory.output;
      }
    } catch (error) {
      if (error instanceof ScenarioExit) {
        memory.status = 'completed';
        throw error;
      }
      memory.status = 'failed';
      memory.error = errorJSON(error);
      const partial = (error as { output?: unknown }).output;
      if (partial !== undefined) memory.output = partial;
    } finally {
      memory.durationMs = Date.now() - started;
      this.#previous = memory;
      this.onEvent({ type: 'step', index, total, step: memory });
    }
    return memory;
  }

  /** One action, tried up to `retry.count` times, each within the step's timeout. */
  async #attempts(step: Step, where: string, scope: Scope, memory: StepMemory): Promise<unknown> {
    const tries = step.retry?.count ?? 1;
    const timeout = step.timeout === undefined ? undefined : toMs(step.timeout);
    for (let attempt = 1; ; attempt++) {
      memory.attempts = attempt;
      try {
        return await withTimeout(timeout, this.state.signal, where, (signal) => {
          const args = hostActions.HOST_SCOPED.has(step.action) ? {} : (render(step.arguments, scope, where) as Record<string, unknown>);
          return ACTIONS[step.action]({ state: this.state, step, args, scope, where, signal });
        });
      } catch (error) {
        if (error instanceof ScenarioExit || attempt >= tries || this.state.signal?.aborted) throw error;
        this.onEvent({ type: 'retry', step: where, attempt, error: asError(error).message });
        await sleep(toMs(step.retry!.delay));
      }
    }
  }

  /** A step over each item of its loop; the output maps each item's key to its result. */
  async #loop(step: Step, where: string, memory: StepMemory): Promise<{ ran: boolean; output: Record<string, unknown> }> {
    const loop = step.loop!;
    const scope = this.scope({ step: memory });
    const items =
      typeof loop.iterable === 'string'
        ? ((await sliceOf(this.state, loop.iterable, where))?.map(plain) ?? evaluate(loop.iterable, scope, where))
        : render(loop.iterable, scope, where);
    const list = Array.isArray(items) ? items : items && typeof items === 'object' ? Object.entries(items) : undefined;
    if (!list)
      throw new ScenarioError(`step "${where}": loop.iterable gave ${JSON.stringify(items)}, not a list or mapping.`, { file: this.state.file, step: where });
    const names = loop.iter_var.split(',').map((n) => n.trim());
    const output: Record<string, unknown> = {};
    let ran = false;
    for (const [i, item] of list.entries()) {
      const bound = names.length > 1 && Array.isArray(item) ? Object.fromEntries(names.map((n, j) => [n, item[j]])) : { [names[0]!]: item };
      const iterScope = this.scope({ step: memory, ...bound });
      if (!holds(step.when, iterScope, where)) continue;
      ran = true;
      const key = step.capture?.key ? String(evaluate(step.capture.key, iterScope, where)) : keyOf(item, i);
      try {
        output[key] = await this.#attempts(step, where, iterScope, memory);
      } catch (error) {
        if (loop.on_error !== 'continue' || error instanceof ScenarioExit) throw Object.assign(asError(error), { output });
        output[key] = { error: errorJSON(error) };
      }
    }
    return { ran, output };
  }
}

/** A loop item's key in the step's output: a host's name, a pair's key, else the item or its index. */
function keyOf(item: unknown, index: number): string {
  if (Array.isArray(item) && item.length === 2 && typeof item[0] === 'string') return item[0];
  if (item && typeof item === 'object') return String((item as { name?: unknown }).name ?? index);
  return typeof item === 'string' || typeof item === 'number' ? String(item) : String(index);
}
