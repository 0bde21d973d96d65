/**
 * `hostbroker/testing`: what a provider author needs to test a provider against the contract —
 * the conformance suite, contexts like the ones the Broker hands a provider, the records the
 * Broker writes, and the Broker's reap rule. Needs vitest for the suite. See docs/providers.md.
 *
 * ```ts
 * import { providerConformance } from 'hostbroker/testing';
 * providerConformance({ definition: myProvider, broker: ({ providers }) => new Broker({ directory, providers }), exists });
 * ```
 * @module hostbroker/testing
 */
export { providerConformance } from './conformance.js';
export type { ConformanceOptions } from './conformance.js';
export { intentRecord, readyRecord, testContext, testHostContext } from './context.js';
export type { TestContext, TestContextOptions } from './context.js';
export { reapable } from '../broker/reap-rule.js';
export type { Reapable, ReapReason, ReapRuleInput } from '../broker/reap-rule.js';
export { sampleRecord, testInventoryStore } from './store-suite.js';
export type { MakeStore } from './store-suite.js';
