/**
 * Multi-host topologies: metadata, provisioning config, `up`, deployments and their outputs.
 * @module
 */
export { Deployment, openDeployment, findDeploymentRecord, destroyDeployment } from './deployment.js';
export type { StoredDeployment, StoredMember } from './deployment.js';
export { up } from './up.js';
export type { UpOptions, UpProgressEvent } from './up.js';
export { parseMetadata, topologyEntries, MetadataSchema } from './metadata.js';
export type { Metadata, MetadataHost, TopologyEntry, TopologyMetadata } from './metadata.js';
export { loadProvisioning, sectionFor, ProvisioningSchema } from './provisioning.js';
export type { Provisioning, ProvisioningInput } from './provisioning.js';
export { renderAnsibleInventory, renderSshConfig, hostVars, memberJSON } from './outputs.js';
export type { AnsibleInventoryOptions, DeploymentMember, SshConfigOptions } from './outputs.js';
