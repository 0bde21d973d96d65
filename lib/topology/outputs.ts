/**
 * What a deployment produces for other tools: an Ansible inventory (mrack's layout), an OpenSSH
 * config snippet, and JSON. Pure functions of the deployment's members; no I/O.
 * @module
 */
import { lazyRequire } from '../lazy-require.js';

const yaml = lazyRequire<typeof import('yaml')>('yaml');
import { command } from '../../hosts/quote.js';
import type { HostRecord, JumpHost } from '../records.js';
import type { TopologyEntry } from './metadata.js';

/** One host of a deployment: its topology entry and its inventory record. */
export interface DeploymentMember {
  entry: TopologyEntry;
  record: HostRecord;
}

/** Options for {@link renderAnsibleInventory}. */
export interface AnsibleInventoryOptions {
  /** Variables of `all` (the metadata's top-level `ansible_inventory`). */
  allVars?: Record<string, unknown>;
  /** The group tree to start from (provisioning `inventory_layout`). */
  layout?: Record<string, unknown>;
  /** os → interpreter (provisioning `python`), `default` for the rest. */
  python?: Record<string, string>;
  /** Key used for hosts that name none (settings `ssh.privateKeyPath`). */
  defaultPrivateKeyPath?: string;
  /** Password variable used for hosts that name none (settings `ssh.passwordEnv`). */
  defaultPasswordEnv?: string;
  /**
   * The known_hosts file with the hosts' pinned keys (`<broker directory>/known_hosts`): SSH hosts
   * get `ansible_ssh_common_args` that make OpenSSH check them against it, strictly.
   */
  knownHostsFile?: string;
}

type Group = { hosts?: Record<string, unknown>; children?: Record<string, Group | null>; vars?: Record<string, unknown> };

/** The host variables of one member, sorted by name. */
export function hostVars(member: DeploymentMember, options: AnsibleInventoryOptions = {}): Record<string, unknown> {
  const { entry, record } = member;
  const c = record.connection;
  const vars: Record<string, unknown> = {};
  if (c?.kind === 'ssh') {
    vars.ansible_host = c.host;
    vars.ansible_port = c.port;
    vars.ansible_user = c.username;
    const key = c.privateKeyPath ?? (c.passwordEnv ? undefined : options.defaultPrivateKeyPath);
    if (key) vars.ansible_ssh_private_key_file = key;
    const passwordEnv = c.passwordEnv ?? (key ? undefined : options.defaultPasswordEnv);
    // A lookup, not the password: Ansible reads the variable when it connects.
    if (passwordEnv) vars.ansible_password = `{{ lookup('env', '${passwordEnv}') }}`;
    const common = [
      ...(options.knownHostsFile ? [sshCommonArgs(options.knownHostsFile)] : []),
      ...(c.jump?.length ? [command('-o', `ProxyCommand=${proxyCommand(c.jump, options)}`)] : []),
      ...(c.forwardAgent ? ['-o ForwardAgent=yes'] : []),
    ];
    if (common.length) vars.ansible_ssh_common_args = common.join(' ');
  } else {
    vars.ansible_host = record.hostname;
  }
  vars.ansible_python_interpreter = (entry.os && options.python?.[entry.os]) ?? options.python?.default ?? '/usr/bin/python3';
  vars.meta_fqdn = entry.fqdn;
  if (entry.os) vars.meta_os = entry.os;
  if (entry.role) vars.meta_role = entry.role;
  vars.meta_domain = entry.domain;
  vars.meta_provider = record.provider;
  vars.meta_provider_id = record.providerId ?? record.id;
  vars.meta_ip = c?.kind === 'ssh' ? c.host : record.hostname;
  vars.meta_hostbroker_id = record.id;
  Object.assign(vars, entry.meta, entry.vars);
  return Object.fromEntries(Object.entries(vars).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * The Ansible inventory as YAML: every host under `all.hosts` with its variables, and listed in
 * each of its groups; a group found anywhere in the layout is used where it is, a missing one is
 * created under `all.children`.
 */
export function renderAnsibleInventory(members: readonly DeploymentMember[], options: AnsibleInventoryOptions = {}): string {
  const layout = structuredClone(options.layout ?? {}) as Record<string, Group | null>;
  const all: Group = (layout.all ??= {}) ?? {};
  layout.all = all;
  all.hosts ??= {};
  if (options.allVars && Object.keys(options.allVars).length) all.vars = { ...(all.vars ?? {}), ...options.allVars };
  for (const m of members) {
    all.hosts[m.entry.fqdn] = hostVars(m, options);
    for (const name of m.entry.groups) {
      let group = findGroup(all, name);
      if (!group) {
        all.children ??= {};
        group = all.children[name] = {};
      }
      group.hosts ??= {};
      group.hosts[m.entry.fqdn] = {};
    }
  }
  return yaml().stringify(layout, { lineWidth: 0 });
}

/**
 * OpenSSH options that check host keys against `file` only: Ansible splits them like a shell, then
 * ssh reads each `-o` value like a config line (which splits an unquoted file list at spaces).
 */
export function sshCommonArgs(file: string): string {
  return command('-o', `UserKnownHostsFile=${quoteArg(file)}`, '-o', 'StrictHostKeyChecking=yes');
}

/**
 * An OpenSSH `ProxyCommand` through the jump hosts, each with its own key and the pinned host
 * keys: Ansible has no config file for the jump hosts, so `ProxyJump` alone would log in to them
 * with the user's defaults. Each nested level doubles its `%` so that every ssh expands its own
 * `%h:%p` only.
 */
export function proxyCommand(hops: readonly JumpHost[], options: { knownHostsFile?: string; defaultPrivateKeyPath?: string }): string {
  let inner: string | undefined;
  for (const hop of hops) {
    const key = hop.privateKeyPath ?? (hop.passwordEnv || hop.agent ? undefined : options.defaultPrivateKeyPath);
    inner = command(
      'ssh',
      '-W',
      '%h:%p',
      '-p',
      hop.port,
      ...(options.knownHostsFile ? ['-o', `UserKnownHostsFile=${quoteArg(options.knownHostsFile)}`, '-o', 'StrictHostKeyChecking=yes'] : []),
      ...(key ? ['-i', key, '-o', 'IdentitiesOnly=yes'] : []),
      ...(inner ? ['-o', `ProxyCommand=${inner.replace(/%/g, '%%')}`] : []),
      `${hop.username}@${hop.host}`,
    );
  }
  return inner ?? '';
}

/** `ProxyJump` value: `user@host:port,...` (IPv6 addresses in brackets). */
export function proxyJump(hops: readonly JumpHost[]): string {
  return hops.map((h) => `${h.username}@${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`).join(',');
}

/** Finds a group by name anywhere under `node.children`, turning a `null` leaf into an object. */
function findGroup(node: Group, name: string): Group | undefined {
  const children = node.children;
  if (!children) return undefined;
  if (name in children) return (children[name] ??= {});
  for (const child of Object.values(children)) {
    const found = child ? findGroup(child, name) : undefined;
    if (found) return found;
  }
  return undefined;
}

/** Options for {@link renderSshConfig}. */
export interface SshConfigOptions {
  /** The known_hosts file with the hosts' pinned keys (`<broker directory>/known_hosts`). */
  knownHostsFile: string;
  /** Heading comment. */
  title?: string;
  defaultPrivateKeyPath?: string;
}

/**
 * An OpenSSH client config snippet: one `Host` block per host (FQDN plus the short name when it
 * is unique), so `ssh -F file master` works. Host keys are checked strictly against the keys
 * hostbroker pinned (its known_hosts file), never the user's own known_hosts.
 */
export function renderSshConfig(members: readonly DeploymentMember[], options: SshConfigOptions): string {
  const shortCounts = new Map<string, number>();
  for (const m of members) {
    const s = m.entry.fqdn.split('.')[0]!;
    shortCounts.set(s, (shortCounts.get(s) ?? 0) + 1);
  }
  const lines: string[] = [];
  if (options.title) lines.push(`# ${options.title}`, '');
  const hops = new Map<string, JumpHost>();
  for (const m of members) {
    const { entry, record } = m;
    const c = record.connection;
    const short = entry.fqdn.split('.')[0]!;
    const patterns = [entry.fqdn, ...(short !== entry.fqdn && shortCounts.get(short) === 1 ? [short] : [])];
    if (c?.kind !== 'ssh') {
      lines.push(`# ${entry.fqdn}: reached through the ${record.provider} provider, not SSH (use \`hostbroker ssh ${record.name}\`)`, '');
      continue;
    }
    lines.push(`Host ${patterns.join(' ')}`);
    lines.push(`  HostName ${c.host}`);
    lines.push(`  Port ${c.port}`);
    lines.push(`  User ${quoteArg(c.username)}`);
    const key = c.privateKeyPath ?? (c.passwordEnv ? undefined : options.defaultPrivateKeyPath);
    if (key) {
      lines.push(`  IdentityFile ${quoteArg(key)}`);
      lines.push('  IdentitiesOnly yes');
    } else if (c.passwordEnv) {
      lines.push(`  # password login: the password is in $${c.passwordEnv}`);
      lines.push('  PreferredAuthentications keyboard-interactive,password');
    }
    if (c.jump?.length) {
      lines.push(`  ProxyJump ${proxyJump(c.jump)}`);
      for (const hop of c.jump) if (!hops.has(hop.host)) hops.set(hop.host, hop);
    }
    if (c.forwardAgent) lines.push('  ForwardAgent yes');
    if (c.passphraseEnv) lines.push(`  # the key is encrypted (passphrase in $${c.passphraseEnv}): load it into ssh-agent first (ssh-add)`);
    lines.push('  StrictHostKeyChecking yes');
    lines.push(`  UserKnownHostsFile ${quoteArg(options.knownHostsFile)}`);
    lines.push('');
  }
  // ProxyJump logs in to each jump host as `ssh <host>` would: these blocks give it the key and the pins.
  for (const hop of hops.values()) {
    lines.push(`# jump host`, `Host ${hop.host}`);
    const key = hop.privateKeyPath ?? (hop.passwordEnv || hop.agent ? undefined : options.defaultPrivateKeyPath);
    if (key) lines.push(`  IdentityFile ${quoteArg(key)}`, '  IdentitiesOnly yes');
    lines.push('  StrictHostKeyChecking yes', `  UserKnownHostsFile ${quoteArg(options.knownHostsFile)}`, '');
  }
  return lines.join('\n');
}

/** OpenSSH config values with spaces are double-quoted. */
function quoteArg(value: string): string {
  return /[\s"]/.test(value) ? `"${value.replace(/"/g, '\\"')}"` : value;
}

/** The JSON form of one member, for test suites. */
export function memberJSON(m: DeploymentMember): Record<string, unknown> {
  const { entry, record } = m;
  return {
    name: entry.name,
    fqdn: entry.fqdn,
    domain: entry.domain,
    role: entry.role ?? null,
    groups: entry.groups,
    os: entry.os ?? null,
    provider: record.provider,
    id: record.id,
    providerId: record.providerId ?? null,
    hostname: record.hostname,
    connection: record.connection ?? null,
    meta: entry.meta,
    vars: entry.vars,
  };
}
