/**
 * The error of scenarios: an invalid file (every problem) or a step that stopped the run.
 * @module
 */
import { BrokerError, type BrokerErrorOptions } from '../errors.js';

/** One thing wrong in a scenario file: where (step and key) and what. */
export interface ScenarioProblem {
  /** The step's name (or `#3` when it has none), absent for top-level keys. */
  step?: string;
  /** The key within the step or file, dotted: `retry.count`, `arguments.command`. */
  key: string;
  message: string;
}

/**
 * A scenario file is invalid (`problems` lists every error, each naming its step and key), or a
 * step failed and stopped it (`step`, and `cause` the step's own error).
 */
export class ScenarioError extends BrokerError {
  override readonly code = 'SCENARIO' as const;
  static override readonly exitCode = 11;
  readonly file: string;
  readonly problems: ScenarioProblem[];
  /** The step that failed, for a run that stopped. */
  readonly step: string | undefined;
  /** What the run did before it stopped (a `ScenarioResult`: every step's status and output). */
  result: Record<string, unknown> | undefined;
  constructor(message: string, details: { file: string; problems?: ScenarioProblem[]; step?: string }, options: BrokerErrorOptions = {}) {
    super(message, options);
    this.file = details.file;
    this.problems = details.problems ?? [];
    this.step = details.step;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), file: this.file, step: this.step, problems: this.problems };
  }
}
