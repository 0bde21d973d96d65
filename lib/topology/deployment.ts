/**
 * A deployment: the hosts `broker.up()` made from one metadata document, looked up by name,
 * role or group, rendered as an Ansible inventory, an SSH config or JSON, and destroyed as one.
 * It is rebuilt from the inventory in any process (`broker.deployment(key)`).
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { TopologyBroker } from './seam.js';
import { PartialFailureError, UserInputError, asError } from '../errors.js';
import { knownHostsPath, renderKnownHosts } from '../known-hosts.js';
import type { Host } from '../../hosts/host.js';
import type { DeploymentRecord, HostRecord } from '../records.js';
import type { Metadata, TopologyEntry } from './metadata.js';
import { memberJSON, renderAnsibleInventory, renderSshConfig, type AnsibleInventoryOptions, type DeploymentMember } from './outputs.js';

/** What a deployment record's `metadata` holds: the document and the output settings in force. */
export interface StoredDeployment {
  document: Metadata;
  /** Provisioning `inventory_layout` at the time of `up`. */
  layout?: Record<string, unknown>;
  /** Provisioning `python` at the time of `up`. */
  python?: Record<string, string>;
}

/** One host of a deployment as stored in its record (`hosts[fqdn]`). */
export type StoredMember = TopologyEntry & { recordId?: string };

/** The hosts of one `broker.up()`. Dispose it (or call `destroy()`) to release them all. */
export class Deployment<H extends Host = Host> implements AsyncDisposable {
  readonly #broker: TopologyBroker<H>;
  readonly #record: DeploymentRecord;
  readonly #members: Array<{ entry: TopologyEntry; host: H }>;
  #destroying: Promise<void> | undefined;

  /** @internal use `broker.up()` or `broker.deployment()`. */
  constructor(broker: TopologyBroker<H>, record: DeploymentRecord, members: Array<{ entry: TopologyEntry; host: H }>) {
    this.#broker = broker;
    this.#record = record;
    this.#members = members;
  }

  /** Stable id (`dep-…`). */
  get id(): string {
    return this.#record.id;
  }
  /** Name: the metadata's `name`, the file name, or a generated one. */
  get name(): string {
    return this.#record.name;
  }
  get createdAt(): string {
    return this.#record.createdAt;
  }
  /** The validated metadata it was made from. */
  get metadata(): Metadata {
    return (this.#record.metadata as StoredDeployment).document;
  }
  /** Every host, in metadata order. */
  get hosts(): H[] {
    return this.#members.map((m) => m.host);
  }

  /** The host with this metadata name, FQDN, or inventory name. Throws when there is none. */
  byName(name: string): H {
    const m =
      this.#members.find((x) => x.entry.name === name || x.entry.fqdn === name) ??
      this.#members.find((x) => x.host.name === name || x.entry.fqdn.split('.')[0] === name);
    if (!m) throw new UserInputError(`deployment ${this.name} has no host \`${name}\`; its hosts: ${this.#members.map((x) => x.entry.fqdn).join(', ')}.`);
    return m.host;
  }

  /** Hosts with this role (possibly none). */
  byRole(role: string): H[] {
    return this.#members.filter((m) => m.entry.role === role).map((m) => m.host);
  }

  /** Hosts in this group (possibly none). */
  byGroup(group: string): H[] {
    return this.#members.filter((m) => m.entry.groups.includes(group)).map((m) => m.host);
  }

  /** The topology facts of a host of this deployment (role, groups, domain, meta_*). */
  entryOf(host: H | string): TopologyEntry {
    const h = typeof host === 'string' ? this.byName(host) : host;
    const m = this.#members.find((x) => x.host === h || x.host.id === h.id);
    if (!m) throw new UserInputError(`${h.name} is not part of deployment ${this.name}.`);
    return m.entry;
  }

  /**
   * Releases every host of the deployment (also ones a killed `up` left in the inventory) and
   * forgets the deployment. Calling it again does nothing more.
   */
  destroy(): Promise<void> {
    this.#destroying ??= destroyDeployment(this.#broker, this.#record.id, this.hosts);
    return this.#destroying;
  }

  /** `await using deployment = await broker.up(...)` destroys it at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.destroy();
  }

  /** The Ansible inventory (YAML) in mrack's layout. */
  ansibleInventory(options: Omit<AnsibleInventoryOptions, 'allVars'> = {}): string {
    const stored = this.#record.metadata as StoredDeployment;
    const ssh = this.#broker.settings.ssh;
    return renderAnsibleInventory(this.#current(), {
      allVars: stored.document.ansible_inventory ?? {},
      ...(stored.layout ? { layout: stored.layout } : {}),
      ...(stored.python ? { python: stored.python } : {}),
      ...(ssh.privateKeyPath ? { defaultPrivateKeyPath: ssh.privateKeyPath } : {}),
      ...(ssh.passwordEnv ? { defaultPasswordEnv: ssh.passwordEnv } : {}),
      knownHostsFile: this.knownHostsFile,
      ...options,
    });
  }

  /**
   * The known_hosts file the outputs point OpenSSH and Ansible at: `<broker directory>/known_hosts`,
   * which the Broker keeps in step with the inventory (every pinned host key).
   */
  get knownHostsFile(): string {
    return knownHostsPath(this.#broker.directory);
  }

  /**
   * An OpenSSH config snippet, one `Host` block per host: `ssh -F file <name>`, checking host keys
   * strictly. With `knownHostsFile`, the broker's known_hosts is copied there (0600) and the
   * config points at the copy.
   */
  sshConfig(options: { knownHostsFile?: string } = {}): string {
    const key = this.#broker.settings.ssh.privateKeyPath;
    const knownHostsFile = options.knownHostsFile ?? this.knownHostsFile;
    if (options.knownHostsFile !== undefined) {
      mkdirSync(dirname(knownHostsFile), { recursive: true, mode: 0o700 });
      // The broker's file rather than these Host objects: a key recorded at first login is there.
      let pinned: string;
      try {
        pinned = readFileSync(this.knownHostsFile, 'utf8');
      } catch {
        pinned = renderKnownHosts(this.#current().map((m) => m.record));
      }
      writeFileSync(knownHostsFile, pinned, { mode: 0o600 });
    }
    return renderSshConfig(this.#current(), {
      knownHostsFile,
      title: `hostbroker deployment ${this.name} (${this.id})`,
      ...(key ? { defaultPrivateKeyPath: key } : {}),
    });
  }

  /** Everything a test suite needs, as plain data. */
  toJSON(): { id: string; name: string; createdAt: string; hosts: Record<string, unknown>[] } {
    return { id: this.id, name: this.name, createdAt: this.createdAt, hosts: this.#current().map(memberJSON) };
  }

  #current(): DeploymentMember[] {
    return this.#members.map((m) => ({ entry: m.entry, record: m.host.record }));
  }
}

/** Checks in every record of a deployment (live hosts first, so their teardown runs) and forgets it. */
export async function destroyDeployment<H extends Host>(broker: TopologyBroker<H>, id: string, live: readonly H[]): Promise<void> {
  const records = (await broker.store.list()).filter((r) => r.deployment === id);
  const liveIds = new Set(live.map((h) => h.id));
  const targets: Array<H | HostRecord> = [...live.filter((h) => records.some((r) => r.id === h.id)), ...records.filter((r) => !liveIds.has(r.id))];
  let failure: Error | undefined;
  if (targets.length) {
    try {
      await broker.checkin(targets);
    } catch (error) {
      failure = asError(error);
    }
  }
  const left = (await broker.store.list()).filter((r) => r.deployment === id);
  if (left.length === 0) {
    await broker.store.removeDeployment(id);
  }
  if (failure) {
    throw failure instanceof PartialFailureError || left.length === 0
      ? failure
      : new PartialFailureError(`deployment ${id}: ${left.length} host(s) could not be released; run \`hostbroker destroy ${id}\` again:`, [
          { target: id, error: failure },
        ]);
  }
}

/** Finds a deployment record by id or name; a UserInputError lists the known ones. */
export async function findDeploymentRecord(broker: TopologyBroker, key?: string): Promise<DeploymentRecord> {
  const all = (await broker.store.snapshot()).deployments;
  const list = (): string => (all.length ? all.map((d) => `${d.name} (${d.id})`).join(', ') : 'none; make one with `hostbroker up <metadata>`');
  if (key === undefined) {
    if (all.length === 1) return all[0]!;
    throw new UserInputError(`say which deployment: ${all.length ? 'there are several' : 'there is none'}. Deployments: ${list()}.`);
  }
  const byId = all.find((d) => d.id === key);
  if (byId) return byId;
  const byName = all.filter((d) => d.name === key);
  if (byName.length === 1) return byName[0]!;
  if (byName.length > 1) throw new UserInputError(`${byName.length} deployments are named \`${key}\`; give an id: ${byName.map((d) => d.id).join(', ')}.`);
  throw new UserInputError(`no deployment \`${key}\` in ${broker.store.location}. Deployments: ${list()}.`);
}

/** Rebuilds a Deployment (with live Hosts) from the inventory, in any process. */
export async function openDeployment<H extends Host>(broker: TopologyBroker<H>, key?: string): Promise<Deployment<H>> {
  const record = await findDeploymentRecord(broker as unknown as TopologyBroker, key);
  const records = new Map((await broker.store.list()).map((r) => [r.id, r]));
  const members: Array<{ entry: TopologyEntry; host: H }> = [];
  for (const stored of Object.values(record.hosts) as unknown as StoredMember[]) {
    const { recordId, ...entry } = stored;
    const hostRecord = recordId ? records.get(recordId) : undefined;
    if (hostRecord) members.push({ entry, host: broker.reconstruct(hostRecord) });
  }
  return new Deployment(broker, record, members);
}
