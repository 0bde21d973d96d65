/**
 * Topology metadata (mrack's `metadata.yaml`): the hosts a test needs, described from the
 * application's point of view (name, role, groups, os, network), not the provider's.
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseYamlStrict as parseYaml } from '../yaml.js';
import { lazySchema, z } from '../zod.js';
import { UserInputError } from '../errors.js';
import type { TopologyHost } from '../provider.js';
import { HostName } from '../records.js';

/** Ansible variables (host, domain or all). */
const AnsibleVars = lazySchema(() => z.record(z.string(), z.unknown()));

/** One host of the metadata. Keys starting with `meta_` become inventory variables. */
export const MetadataHostSchema = lazySchema(() =>
  z
    .object({
      name: HostName,
      role: z.string().min(1).optional(),
      group: z.string().min(1).optional(),
      groups: z.array(z.string().min(1)).optional(),
      os: z.string().min(1).optional(),
      network: z.string().min(1).optional(),
      provider: z.string().min(1).optional(),
      size: z.string().min(1).optional(),
      /** Provider-specific checkout arguments for this host. */
      args: z.record(z.string(), z.unknown()).optional(),
      /** Extra Ansible host variables. */
      ansible_inventory: AnsibleVars.optional(),
    })
    .catchall(z.unknown())
    .superRefine((host, ctx) => {
      for (const key of Object.keys(host)) {
        if (KNOWN_HOST_KEYS.has(key) || key.startsWith('meta_')) continue;
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `unknown host key \`${key}\`; known: ${[...KNOWN_HOST_KEYS].join(', ')}, or any meta_* (provider arguments go under \`args\`, Ansible variables under \`ansible_inventory\`)`,
        });
      }
    }),
);

const KNOWN_HOST_KEYS = new Set(['name', 'role', 'group', 'groups', 'os', 'network', 'provider', 'size', 'args', 'ansible_inventory']);

/** One domain: a DNS domain and the hosts in it. */
export const MetadataDomainSchema = lazySchema(() =>
  z.strictObject({
    name: z.string().min(1),
    /** Kind of domain (mrack: ipa, ad, linux); recorded as `meta_domain_type`. */
    type: z.string().optional(),
    hosts: z.array(MetadataHostSchema).min(1, 'a domain needs at least one host'),
    ansible_inventory: AnsibleVars.optional(),
  }),
);

/** The whole metadata document. */
export const MetadataSchema = lazySchema(() =>
  z.strictObject({
    /** Deployment name (default: the file name, or `deployment-<random>`). */
    name: HostName.optional(),
    /** Provider of hosts that name none. */
    provider: z.string().min(1).optional(),
    /** Network of hosts that name none. */
    network: z.string().min(1).optional(),
    domains: z.array(MetadataDomainSchema).min(1, 'metadata needs at least one domain with hosts'),
    /** Variables for `all` in the Ansible inventory. */
    ansible_inventory: AnsibleVars.optional(),
  }),
);

/** Metadata as a user writes it. */
export type TopologyMetadata = z.input<typeof MetadataSchema>;
/** Validated metadata. */
export type Metadata = z.output<typeof MetadataSchema>;
/** One validated metadata host. */
export type MetadataHost = z.output<typeof MetadataHostSchema>;

/** One host of a topology with everything outputs need: the provider-facing part plus domain and variables. */
export interface TopologyEntry extends TopologyHost {
  /** Fully qualified name: the host name when it has a dot, else `name.domain`. */
  fqdn: string;
  domain: string;
  /** Explicit provider on the host, when it names one. */
  provider?: string;
  /** `meta_*` keys of the host. */
  meta: Record<string, unknown>;
  /** Ansible variables: domain-level, then host-level. */
  vars: Record<string, unknown>;
}

/**
 * Reads metadata from a YAML string, a file path (`*.yaml`, `*.yml`, `*.json`) or an object, and
 * validates it. Errors name the key and the host.
 */
export function parseMetadata(input: string | TopologyMetadata, source = 'metadata'): Metadata {
  let raw: unknown = input;
  if (typeof input === 'string') {
    let text = input;
    if (/\.(ya?ml|json)$/i.test(input.trim()) && !input.includes('\n')) {
      source = input;
      try {
        text = readFileSync(input, 'utf8');
      } catch (error) {
        throw new UserInputError(`cannot read the metadata file ${input}: ${(error as Error).message}.`, { cause: error });
      }
    }
    try {
      raw = parseYaml(text);
    } catch (error) {
      throw new UserInputError(`${source} is not valid YAML: ${(error as Error).message.split('\n')[0]}.`, { cause: error });
    }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new UserInputError(`${source} must be a mapping with \`domains:\` (each with \`name\` and \`hosts\`) at the top level.`);
  }
  const result = MetadataSchema.safeParse(raw);
  if (!result.success) throw new UserInputError(`${source} is invalid: ${describeIssues(result.error, raw)}.`);
  const names = new Map<string, number>();
  for (const d of result.data.domains) for (const h of d.hosts) names.set(fqdnOf(h.name, d.name), (names.get(fqdnOf(h.name, d.name)) ?? 0) + 1);
  const dupes = [...names].filter(([, n]) => n > 1).map(([k]) => k);
  if (dupes.length) throw new UserInputError(`${source} is invalid: host names must be unique, but ${dupes.join(', ')} appear more than once.`);
  return result.data;
}

/** Flattens metadata into one entry per host, in document order. */
export function topologyEntries(metadata: Metadata): TopologyEntry[] {
  const out: TopologyEntry[] = [];
  for (const domain of metadata.domains) {
    for (const h of domain.hosts) {
      const groups = [...(h.group ? [h.group] : []), ...(h.groups ?? [])].filter((g, i, all) => all.indexOf(g) === i);
      const meta = Object.fromEntries(Object.entries(h).filter(([k]) => k.startsWith('meta_')));
      if (domain.type !== undefined && meta.meta_domain_type === undefined) meta.meta_domain_type = domain.type;
      const entry: TopologyEntry = {
        name: h.name,
        fqdn: fqdnOf(h.name, domain.name),
        domain: domain.name,
        groups,
        args: { ...(h.args ?? {}) },
        meta,
        vars: { ...(domain.ansible_inventory ?? {}), ...(h.ansible_inventory ?? {}) },
      };
      if (h.role) entry.role = h.role;
      if (h.os) entry.os = h.os;
      if (h.size) entry.size = h.size;
      const network = h.network ?? metadata.network;
      if (network) entry.network = network;
      if (h.provider) entry.provider = h.provider;
      out.push(entry);
    }
  }
  return out;
}

function fqdnOf(name: string, domain: string): string {
  return name.includes('.') ? name : `${name}.${domain}`;
}

/** Zod issues with the host's name in the path (`domains[0].hosts[1] (web1).role`). */
function describeIssues(error: z.ZodError, raw: unknown): string {
  return error.issues
    .map((issue) => {
      const parts: string[] = [];
      let node: unknown = raw;
      for (const seg of issue.path) {
        node = node && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[seg as PropertyKey] : undefined;
        if (typeof seg === 'number') {
          const name = node && typeof node === 'object' ? (node as { name?: unknown }).name : undefined;
          parts[parts.length - 1] += `[${seg}]${typeof name === 'string' ? ` (${name})` : ''}`;
        } else parts.push(String(seg));
      }
      return `${parts.join('.') || '(top level)'}: ${issue.message}`;
    })
    .join('; ');
}
