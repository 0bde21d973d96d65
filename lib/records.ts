/**
 * The shape of what the inventory stores. Records never hold a secret: connection details
 * point at key files or environment variables, never at key material or passwords.
 * @module
 */
import { lazySchema, z } from './zod.js';

/** Lifecycle of a host record. */
export const HostState = lazySchema(() => z.enum(['provisioning', 'ready', 'releasing']));
export type HostState = z.infer<typeof HostState>;

/**
 * A host, domain or deployment name as providers and topologies accept it: letters, digits, `.`,
 * `_` and `-`, starting with a letter or digit (so it is a valid container, domain and file name).
 */
export const HostName = lazySchema(() => z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'use letters, digits, ., _ and - (starting with a letter or digit)'));

/** A public key in OpenSSH's one-line form without comment: `ssh-ed25519 AAAA...`. */
export const PUBLIC_KEY_LINE = /^[a-z][a-z0-9@.-]* [A-Za-z0-9+/]+={0,2}$/;

/**
 * One jump host (bastion) on the way to a host, like one entry of OpenSSH `ProxyJump a,b`.
 * Secrets are referenced, never stored.
 */
export const JumpHost = lazySchema(() =>
  z.object({
    host: z.string().min(1),
    port: z.number().int().positive().default(22),
    username: z.string().min(1),
    privateKeyPath: z.string().optional(),
    passwordEnv: z.string().optional(),
    /** Log in with the keys of the ssh-agent at `$SSH_AUTH_SOCK`. */
    agent: z.boolean().optional(),
    /** Environment variable holding the passphrase of an encrypted `privateKeyPath`. */
    passphraseEnv: z.string().optional(),
    /** The jump host's key, pinned like a host's (`SHA256:...` and the key line). */
    hostKey: z.string().optional(),
    hostPublicKey: z.string().regex(PUBLIC_KEY_LINE, 'an OpenSSH public key line: `<type> <base64>`').optional(),
  }),
);
export type JumpHost = z.infer<typeof JumpHost>;
/** A jump host as written (the port may be left out). */
export type JumpHostInput = z.input<typeof JumpHost>;

/** How to reach a host over SSH. Secrets are referenced, never stored. */
export const SshConnection = lazySchema(() =>
  z.object({
    kind: z.literal('ssh'),
    host: z.string(),
    port: z.number().int().positive().default(22),
    username: z.string(),
    /** Path of a private key file on this machine. */
    privateKeyPath: z.string().optional(),
    /** Name of an environment variable that holds the password. */
    passwordEnv: z.string().optional(),
    /** SHA256 fingerprint of the host key (`SHA256:...`): given by the provider or recorded on first use. */
    hostKey: z.string().optional(),
    /**
     * The host key itself in OpenSSH's one-line form (`ssh-ed25519 AAAA...`, no comment): what
     * `<broker directory>/known_hosts` lists and every later connection must present.
     */
    hostPublicKey: z.string().regex(PUBLIC_KEY_LINE, 'an OpenSSH public key line: `<type> <base64>`, e.g. `ssh-ed25519 AAAA...`').optional(),
    /** Jump hosts to go through, first to last (OpenSSH `ProxyJump`). */
    jump: z.array(JumpHost).optional(),
    /** Log in with the keys of the ssh-agent at `$SSH_AUTH_SOCK`. */
    agent: z.boolean().optional(),
    /** Forward the ssh-agent to the host (OpenSSH `ForwardAgent yes`). */
    forwardAgent: z.boolean().optional(),
    /** Environment variable holding the passphrase of an encrypted `privateKeyPath`. */
    passphraseEnv: z.string().optional(),
  }),
);
export type SshConnection = z.infer<typeof SshConnection>;

/** The host is reached through its provider's own session (e.g. container exec). */
export const ProviderConnection = lazySchema(() =>
  z.object({
    kind: z.literal('provider'),
  }),
);
export type ProviderConnection = z.infer<typeof ProviderConnection>;

export const Connection = lazySchema(() => z.discriminatedUnion('kind', [SshConnection, ProviderConnection]));
export type Connection = z.infer<typeof Connection>;

/**
 * Where this process reaches a port of the host when it is not `hostname:port`: a container's
 * published port, a VM's user-mode forward. Keyed by the port on the host, e.g. `"8080"`.
 */
export const PortMap = lazySchema(() =>
  z.record(z.string().regex(/^[0-9]+$/, 'a port number'), z.object({ host: z.string().min(1), port: z.number().int().positive() })),
);
export type PortMap = z.infer<typeof PortMap>;

/** What was asked for, so that `duplicate` and `sync` can ask again. Secrets are removed. */
export const Recipe = lazySchema(() =>
  z.object({
    provider: z.string(),
    instance: z.string().optional(),
    nick: z.string().optional(),
    args: z.record(z.string(), z.unknown()).default({}),
  }),
);
export type Recipe = z.infer<typeof Recipe>;

/** One host in the inventory. */
export const HostRecord = lazySchema(() =>
  z.object({
    /** Stable id, also the tag providers put on what they create. */
    id: z.string().min(1),
    name: z.string(),
    /** Address the host is reached at; empty while provisioning. */
    hostname: z.string().default(''),
    provider: z.string(),
    instance: z.string(),
    state: HostState,
    recipe: Recipe,
    owner: z.string(),
    /** Identity of the broker directory that created the host. */
    brokerId: z.string(),
    createdAt: z.string(),
    /** ISO time the lease ends, when there is a lease. */
    leaseExpires: z.string().optional(),
    /** The provider's own id of the resource (container id, instance id, ...). */
    providerId: z.string().optional(),
    connection: Connection.optional(),
    /** Reachable addresses of the host's ports, when they differ from `hostname:port`. */
    ports: PortMap.optional(),
    /** Provider-specific facts (no secrets). */
    data: z.record(z.string(), z.unknown()).default({}),
    /** Deployment this host belongs to (topologies). */
    deployment: z.string().optional(),
    /** Process that is checking the host out, so orphans of killed processes can be told apart. */
    pid: z.number().int().optional(),
    /** Machine the checkout process runs on. */
    machine: z.string().optional(),
    /**
     * The Broker (worker) holding the host, on a shared store: its liveness lease id. A record whose
     * worker's liveness is gone is an orphan any worker may finish.
     */
    worker: z.string().optional(),
    /**
     * Set while the host waits in the warm-reuse pool (checked in with `reuse`): since when, and the
     * hash of its recipe that a later `checkout({ reuse: true })` matches.
     */
    pooled: z.object({ at: z.string(), recipe: z.string().min(1) }).optional(),
    /** Set when a host is kept on purpose (e.g. its test failed). */
    kept: z.object({ reason: z.string(), at: z.string() }).optional(),
    /** Last release error, kept so a person can see why a checkin failed. */
    lastError: z.string().optional(),
    /**
     * The pool resource this host holds (e.g. a static machine), claimed through the store's
     * `reserve`. It lives on the record so that removing the record frees it.
     */
    reserved: z.object({ pool: z.string().min(1), resource: z.string().min(1) }).optional(),
  }),
);
export type HostRecord = z.infer<typeof HostRecord>;
/** A record as written by callers (defaults may be omitted). */
export type HostRecordInput = z.input<typeof HostRecord>;

/** A multi-host deployment made by `broker.up`. */
export const DeploymentRecord = lazySchema(() =>
  z.object({
    id: z.string(),
    name: z.string(),
    createdAt: z.string(),
    owner: z.string(),
    /** The metadata it was made from (no secrets). */
    metadata: z.unknown(),
    /** Extra facts per host name (role, groups, domain, meta_*). */
    hosts: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
  }),
);
export type DeploymentRecord = z.infer<typeof DeploymentRecord>;

/** The whole inventory file. */
export const InventoryFile = lazySchema(() =>
  z.object({
    version: z.literal(1),
    /** Raised by every write; a writer that finds another than it read knows its view is stale. */
    generation: z.number().int().nonnegative().optional(),
    hosts: z.array(HostRecord),
    deployments: z.array(DeploymentRecord).default([]),
  }),
);
export type InventoryFile = z.infer<typeof InventoryFile>;
