/**
 * hostbroker: check hosts out of providers, run commands and move files over their sessions,
 * and check them in again, with a file-locked inventory that never loses a host.
 *
 * ```ts
 * import { Broker } from 'hostbroker';
 * await using broker = new Broker();
 * await using host = await broker.checkout({ provider: 'local' });
 * const r = await host.execute('uname -r');
 * ```
 * @module hostbroker
 */
export { Broker } from './broker/index.js';
export type {
  BrokerOptions,
  CheckinOptions,
  CheckoutOptions,
  CheckoutRequest,
  ExecuteRequest,
  HostTarget,
  NickRequest,
  ProgressEvent,
  ProviderInfo,
  ProviderRequest,
  SyncResult,
  WatchOptions,
} from './broker/index.js';
export type { ScenarioEvent, ScenarioOptions, ScenarioResult, StepMemory, StepStatus as ScenarioStepStatus } from './scenarios/index.js';
export { Host } from '../hosts/host.js';
export type { HostClass, HostInit, HostOwner } from '../hosts/host.js';
export { HostGroup } from '../hosts/host-group.js';
export { Session } from '../hosts/session.js';
export type { HasSession, RemoteProcess, RemoteSignal, SpawnOptions, Tail, Transport, TransportFactory, WriteOptions } from '../hosts/session.js';
export { SshTransport, fingerprint } from '../hosts/ssh-transport.js';
export type { SshTransportOptions } from '../hosts/ssh-transport.js';
export type { ExecOptions, OutputOptions, Result } from '../hosts/result.js';
export { HostProcess } from '../hosts/process.js';
export type { ProcessOptions } from '../hosts/process.js';
export type { Address, HttpCheck, ReadinessCheck, WaitOptions } from '../hosts/readiness.js';
export { quote, command } from '../hosts/quote.js';
export {
  AbortedError,
  BrokerError,
  CommandError,
  HostConnectionError,
  InventoryError,
  MissingDependencyError,
  PartialFailureError,
  ProviderError,
  SettingsError,
  TimeoutError,
  UserInputError,
  importOptional,
} from './errors.js';
export type { BrokerErrorCode, BrokerErrorOptions, DanglingHost, FailureEntry } from './errors.js';
export { ScenarioError } from './scenarios/errors.js';
export type { ScenarioProblem } from './scenarios/errors.js';
export { ReadinessError } from '../hosts/readiness.js';
export { TlsError } from './errors.js';
// Provider code registers the passwords and tokens it reads, so no log or error shows them.
export { registerSecret } from './secrets.js';
export { FileInventoryStore, Inventory, INVENTORY_FILE } from './inventory/file.js';
export type { InventoryOptions } from './inventory/file.js';
export type {
  InventoryChange,
  InventorySnapshot,
  InventoryStore,
  RecordPatch,
  Reservation,
  WorkerLiveness,
  WriteCondition,
} from './inventory/store.js';
// The etcd store is chosen in settings (`inventory.store: etcd`); its error is public.
export { EtcdUnavailableError } from './inventory/etcd-error.js';
export { compileFilter, applyFilter, parseFilter } from './filter.js';
export type { Filter, FilterCondition, FilterOperator } from './filter.js';
export { createLogger } from './logger.js';
export { hostTable as inventoryTable } from './cli/format.js';
export type { Logger, LogLevel } from './logger.js';
export { loggerStyleOf, safeLogger } from './logger.js';
export type { LoggerStyle } from './logger.js';
export { SPECIFICATION_VERSION, defaultSshConnection, defineProvider, implementProvider, standardTags, pickFlavor, pickImage, TAGS } from './provider.js';
export type {
  AnyProviderDefinition,
  CheckoutTarget,
  DiscoveredHost,
  HostContext,
  ImplementationFor,
  ImplementationOf,
  InstanceOf,
  ProviderActionDefinition,
  ProviderActions,
  ProviderContext,
  ProviderDefinition,
  ProviderImplementation,
  ProvisionedHost,
  ProvisioningConfig,
  TopologyHost,
} from './provider.js';
export type { ProviderArgs } from './registry.js';
export type { ArgumentDoc } from './requests.js';
export { loadSettings, parseSettings, toMs, SETTINGS_FILE, SettingsSchema } from './settings.js';
export type { Duration, Settings, SettingsInput } from './settings.js';
export type { Connection, DeploymentRecord, HostRecord, HostState, InventoryFile, JumpHost, JumpHostInput, PortMap, Recipe, SshConnection } from './records.js';
export type { HostConnectionErrorOptions, HostConnectionReason } from './errors.js';
// Topologies (broker.up / broker.deployment).
// From each module, not the topology barrel: `up` (broker.up) loads on first use.
export { Deployment } from './topology/deployment.js';
export { parseMetadata, MetadataSchema } from './topology/metadata.js';
export { loadProvisioning, ProvisioningSchema } from './topology/provisioning.js';
export { renderAnsibleInventory, renderSshConfig } from './topology/outputs.js';
export type {
  Metadata,
  Provisioning,
  ProvisioningInput,
  TopologyEntry,
  TopologyMetadata,
  UpOptions,
  UpProgressEvent,
  DeploymentMember,
  AnsibleInventoryOptions,
  SshConfigOptions,
} from './topology/index.js';
// Host configuration (whiteprints, site plans, prefabs) and bundles: docs/configuration.md
export { Whiteprint, SitePlan, PlanReport, Prefab, prefab, DriftError, gatherFacts, renderTemplate, resolveResource } from '../hosts/config/index.js';
export { Apt, Pip3, Folder, FileFromString, FileFromPath, Symlink, LineInFile, FileExistsValidator } from '../hosts/config/index.js';
export type {
  ApplyConfig,
  Config,
  ConfigInput,
  ConfigOf,
  ConfigTarget,
  Facts,
  PlanStep,
  PrefabAction,
  PrefabSpec,
  SitePlanOptions,
  StepReport,
  StepStatus,
  UploadOptions,
  WhiteprintClass,
  WhiteprintExecOptions,
} from '../hosts/config/index.js';
export type { Phase, WhiteprintInit, FileMode, Attributes, RenderOptions, PlanSteps, OneOffExecOptions } from '../hosts/config/index.js';
export { applyBundles, parseBundle } from './bundles.js';
export type { ApplyBundlesOptions, Bundle, BundleInput, BundleFile, BundleScript, BundleTarget } from './bundles.js';
