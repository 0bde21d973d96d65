/**
 * Hosts from Tower job artifacts, following Broker's convention: a workflow's jobs publish
 * (with `set_stats`) either `_broker_facts` / `_broker_args`, or plain facts such as `fqdn`,
 * `hostname`, `vm_provisioned`, `vm_name`, `os_distribution`, `tower_inventory`, `host_type`.
 * @module
 */
import { redact } from '../../lib/secrets.js';

/** What a workflow's artifacts say about the host it made. */
export interface ArtifactHost {
  /** Address: the first key ending in `fqdn`, else `hostname`, else `ip`/`ansible_host`. */
  hostname?: string;
  /** VM name the release workflow knows the host by (`name`, `vm_provisioned`, `vm_name`). */
  name?: string;
  /** `host_type`, when the workflow says (e.g. `host`, `satellite`). */
  hostType?: string;
  /** Facts (secret-looking keys dropped). */
  facts: Record<string, unknown>;
  /** `_broker_args`, when the workflow published them. */
  args: Record<string, unknown>;
}

/** Combines artifacts of a workflow's jobs: the last job's that has any, or all merged (later wins). */
export function combineArtifacts(jobs: Array<{ failed: boolean; artifacts: Record<string, unknown> }>, strategy: 'last' | 'merge'): Record<string, unknown> {
  const withArtifacts = jobs.filter((j) => Object.keys(j.artifacts).length > 0);
  if (strategy === 'last') return withArtifacts.at(-1)?.artifacts ?? {};
  return withArtifacts.reduce<Record<string, unknown>>((acc, j) => deepMerge(acc, j.artifacts), {});
}

/** Reads the host out of combined artifacts. */
export function hostFromArtifacts(artifacts: Record<string, unknown>): ArtifactHost {
  const facts = isObject(artifacts._broker_facts) ? artifacts._broker_facts : artifacts;
  const args = isObject(artifacts._broker_args) ? artifacts._broker_args : {};
  let hostname: string | undefined;
  let name: string | undefined;
  let hostType: string | undefined;
  for (const [key, value] of Object.entries(facts)) {
    const v = first(value);
    if (v === undefined) continue;
    if (!hostname && key.endsWith('fqdn')) hostname = v;
    if (!name && (key === 'name' || key === 'vm_provisioned' || key === 'vm_name')) name = v;
    if (!hostType && key.endsWith('host_type')) hostType = v;
  }
  hostname ??= first(facts.hostname) ?? first(facts.ansible_host) ?? first(facts.ip);
  const { _broker_args: _a, _broker_facts: _f, ...plain } = facts;
  return {
    ...(hostname ? { hostname } : {}),
    ...((name ?? hostname) ? { name: name ?? hostname } : {}),
    ...(hostType ? { hostType } : {}),
    facts: redact(plain, 'drop'),
    args: redact(args, 'drop'),
  };
}

/** Names of hosts that jobs which did succeed reported (what a failed workflow left behind). */
export function danglingNames(jobs: Array<{ failed: boolean; artifacts: Record<string, unknown> }>): string[] {
  const names = new Set<string>();
  for (const job of jobs) {
    if (job.failed) continue;
    const vmName = first(job.artifacts.vm_name);
    if (vmName) names.add(vmName);
    const host = hostFromArtifacts(job.artifacts);
    if (host.name) names.add(host.name);
  }
  return [...names];
}

function first(value: unknown): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (typeof v === 'string' && v.trim()) return v.trim();
  if (typeof v === 'number') return String(v);
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isObject(prev) && isObject(v) ? deepMerge(prev, v) : v;
  }
  return out;
}
