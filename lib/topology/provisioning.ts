/**
 * The provisioning config (mrack's `provisioning-config.yaml`): what a topology's words mean to
 * each provider (os → image, group → flavor, network → provider network), and how failures are
 * handled. It lives in the settings' `provisioning:` section or in a file given to `up`.
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseYamlStrict as parseYaml } from '../yaml.js';
import { lazySchema, z } from '../zod.js';
import { UserInputError } from '../errors.js';
import type { ProvisioningConfig } from '../provider.js';
import { formatIssues } from '../settings.js';

const Strategy = lazySchema(() => z.enum(['abort', 'retry']));

/** One provider's section. Unknown keys are kept for the provider's `fromTopology`. */
export const ProviderProvisioningSchema = lazySchema(() =>
  z
    .object({
      images: z.record(z.string(), z.string()).optional(),
      flavors: z.record(z.string(), z.string()).optional(),
      networks: z.record(z.string(), z.string()).optional(),
      keypair: z.string().optional(),
      strategy: Strategy.optional(),
      max_retry: z.number().int().min(0).max(100).optional(),
    })
    .catchall(z.unknown()),
);

const TOP_LEVEL = ['default_provider', 'strategy', 'max_retry', 'python', 'inventory_layout'] as const;

/** The whole provisioning config. Every other top-level key is a provider section. */
export const ProvisioningSchema = lazySchema(() =>
  z
    .object({
      /** Provider of hosts when neither the host nor the metadata names one. */
      default_provider: z.string().min(1).optional(),
      /** Default strategy for providers that name none (`abort`). */
      strategy: Strategy.optional(),
      /** Default retries under `retry` (2). */
      max_retry: z.number().int().min(0).max(100).optional(),
      /** os → Python interpreter for `ansible_python_interpreter` (`default` for the rest). */
      python: z.record(z.string(), z.string()).optional(),
      /** The group tree the Ansible inventory starts from (`all: { children: ... }`). */
      inventory_layout: z.record(z.string(), z.unknown()).optional(),
    })
    .catchall(ProviderProvisioningSchema),
);

/** Provisioning config as a user writes it: a few top-level keys, and one section per provider. */
export interface ProvisioningInput {
  /** Provider of hosts when neither the host nor the metadata names one. */
  default_provider?: string;
  /** Default strategy for providers that name none (`abort`). */
  strategy?: 'abort' | 'retry';
  /** Default retries under `retry` (2). */
  max_retry?: number;
  /** os → Python interpreter for `ansible_python_interpreter` (`default` for the rest). */
  python?: Record<string, string>;
  /** The group tree the Ansible inventory starts from (`all: { children: ... }`). */
  inventory_layout?: Record<string, unknown>;
  /** Provider sections by provider name. */
  [provider: string]: ProvisioningConfig | Record<string, unknown> | string | number | undefined;
}
/** Validated provisioning config. */
export type Provisioning = z.output<typeof ProvisioningSchema>;

/**
 * Reads the provisioning config: an object, a YAML/JSON file path, or the settings' section
 * when `input` is undefined. Provider sections must name known providers.
 */
export function loadProvisioning(
  input: string | ProvisioningInput | undefined,
  fromSettings: Record<string, unknown>,
  knownProviders: readonly string[],
): Provisioning {
  let raw: unknown = input ?? fromSettings;
  let source = input === undefined ? 'settings `provisioning`' : 'provisioning config';
  if (typeof input === 'string') {
    source = input;
    let text: string;
    try {
      text = readFileSync(input, 'utf8');
    } catch (error) {
      throw new UserInputError(`cannot read the provisioning config ${input}: ${(error as Error).message}.`, { cause: error });
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (error) {
      throw new UserInputError(`${input} is not valid YAML: ${(error as Error).message.split('\n')[0]}.`, { cause: error });
    }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new UserInputError(`${source} must be a mapping of provider names to their sections.`);
  for (const key of Object.keys(raw)) {
    if ((TOP_LEVEL as readonly string[]).includes(key) || knownProviders.includes(key)) continue;
    throw new UserInputError(`${source}: \`${key}\` is neither a provider (${knownProviders.join(', ')}) nor a known key (${TOP_LEVEL.join(', ')}).`);
  }
  const result = ProvisioningSchema.safeParse(raw);
  if (!result.success) throw new UserInputError(`${source} is invalid: ${formatIssues(result.error)}.`);
  return result.data;
}

/** A provider's section with the top-level strategy defaults filled in. */
export function sectionFor(provisioning: Provisioning, provider: string): ProvisioningConfig & { strategy: 'abort' | 'retry'; max_retry: number } {
  const section = (provisioning[provider] as ProvisioningConfig | undefined) ?? {};
  return {
    ...section,
    strategy: section.strategy ?? provisioning.strategy ?? 'abort',
    max_retry: section.max_retry ?? provisioning.max_retry ?? 2,
  };
}
