/**
 * What a running scenario holds: its Broker, the hosts and deployments it made, where its
 * `output` steps write, and how steps are told to stop.
 * @module
 */
import type { Writable } from 'node:stream';
import type { Host } from '../../hosts/host.js';
import type { Deployment } from '../topology/deployment.js';
import type { Step } from './schema.js';
import type { ScenarioBroker } from './seam.js';
import type { Scope } from './template.js';

/** A running scenario's state, shared by its steps (and its chained scenarios' runs). */
export interface ScenarioState {
  broker: ScenarioBroker;
  /** The scenario file, for messages and relative paths. */
  file: string;
  /** The hosts this scenario checked out and still holds, in checkout order, by record id. */
  hosts: Map<string, Host>;
  /** Ids of scenario hosts a step asked to keep: not checked in at the end. */
  keep: Set<string>;
  /** Deployments `up` made, by id; destroyed at the end unless kept. */
  deployments: Map<string, { deployment: Deployment; keep: boolean }>;
  stdout: Writable;
  stderr: Writable;
  /** Aborted when the scenario is stopped from outside. */
  signal: AbortSignal | undefined;
  /** Runs another scenario file (`run_scenarios`) on the same Broker. */
  runNested(path: string, vars: Record<string, unknown>): Promise<{ exitCode: number; status: string }>;
}

/** What an action is given. */
export interface ActionCall {
  state: ScenarioState;
  step: Step;
  /** The step's arguments rendered against the scope (for host actions: without `host`). */
  args: Record<string, unknown>;
  scope: Scope;
  /** The step's label for messages. */
  where: string;
  /** Ends with the step's timeout or the scenario's signal. */
  signal: AbortSignal;
}
