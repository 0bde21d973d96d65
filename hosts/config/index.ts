/**
 * Host configuration: whiteprints, site plans and prefabs (as marchitect has them), target facts,
 * templates and resource lookup. See docs/configuration.md.
 * @module
 */
export { Whiteprint, prefab, mergeConfig } from './whiteprint.js';
export type {
  Config,
  ConfigInput,
  ConfigOf,
  Phase,
  PrefabSpec,
  UploadOptions,
  WhiteprintClass,
  WhiteprintExecOptions,
  WhiteprintInit,
  WhiteprintOutcome,
} from './whiteprint.js';
export { SitePlan, PlanReport, applyPlan, validatePlan } from './site-plan.js';
export type { ApplyConfig, OneOffExecOptions, PlanStep, PlanSteps, SitePlanOptions, StepReport, StepStatus } from './site-plan.js';
export { gatherFacts } from './facts.js';
export type { Facts } from './facts.js';
export { renderTemplate } from './templates.js';
export type { RenderOptions } from './templates.js';
export { resolveResource } from './resources.js';
export { DriftError } from './errors.js';
export { ensureFile, remoteState, modeString } from './remote.js';
export type { Attributes, FileMode, RemoteState } from './remote.js';
export type { ConfigTarget } from './target.js';
export * from './prefabs/index.js';
