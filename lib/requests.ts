/**
 * Turning a checkout request (nick, args file, explicit arguments) into validated provider
 * arguments.
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseYamlStrict as parseYaml } from './yaml.js';
import { z } from './zod.js';
import { SettingsError, UserInputError } from './errors.js';
import type { ProviderDefinition } from './provider.js';
import { formatIssues, type Settings } from './settings.js';

/** Keys of a checkout request that are options, not provider arguments. */
export const CHECKOUT_OPTION_KEYS = [
  'nick',
  'provider',
  'count',
  'instance',
  'hostClass',
  'argsFile',
  'lease',
  'timeout',
  'concurrency',
  'onPartialFailure',
  'bundles',
  'bundleVars',
  'waitForSsh',
  'deployment',
  'signal',
  'waitFor',
  'reuse',
  'reset',
  'reuseMark',
  'jump',
] as const;

/** Reads an args file (JSON or YAML) whose top-level keys become arguments. */
export function readArgsFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UserInputError(`cannot read the args file ${path}: ${(error as Error).message}.`, { cause: error });
  }
  let data: unknown;
  try {
    data = parseYaml(text); // YAML is a superset of JSON
  } catch (error) {
    throw new UserInputError(`the args file ${path} is neither JSON nor YAML: ${(error as Error).message.split('\n')[0]}.`, { cause: error });
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new UserInputError(`the args file ${path} must hold a mapping of argument names to values at the top level.`);
  }
  return data as Record<string, unknown>;
}

/** The merged request: nick < args file < explicit arguments. */
export function mergeRequest(request: Record<string, unknown>, settings: Settings): { provider: string; args: Record<string, unknown>; nick?: string } {
  let merged: Record<string, unknown> = {};
  const nick = request.nick;
  if (nick !== undefined) {
    if (typeof nick !== 'string') throw new UserInputError('`nick` must be a string.');
    const found = settings.nicks[nick];
    if (!found) {
      const known = Object.keys(settings.nicks);
      throw new UserInputError(
        `there is no nick \`${nick}\`; ${known.length ? `known nicks: ${known.join(', ')}` : 'define nicks under `nicks:` in broker_settings.yaml'}.`,
      );
    }
    merged = { ...found };
  }
  if (request.argsFile !== undefined) {
    if (typeof request.argsFile !== 'string') throw new UserInputError('`argsFile` must be a path.');
    merged = { ...merged, ...readArgsFile(request.argsFile) };
  }
  for (const [k, v] of Object.entries(request)) {
    if (!(CHECKOUT_OPTION_KEYS as readonly string[]).includes(k) && v !== undefined) merged[k] = v;
  }
  const provider = request.provider ?? merged.provider;
  delete merged.provider;
  // Checkout options may also come from a nick or args file.
  for (const k of CHECKOUT_OPTION_KEYS) delete merged[k];
  if (typeof provider !== 'string' || provider === '') {
    throw new UserInputError('a checkout needs a `provider` (e.g. { provider: "local" }) or a `nick` defined in settings.');
  }
  return nick === undefined ? { provider, args: merged } : { provider, args: merged, nick: nick as string };
}

/** Validates provider arguments with the provider's schema; unknown keys are errors. */
export function validateArgs(definition: ProviderDefinition, args: Record<string, unknown>, what = 'checkout'): Record<string, unknown> {
  const result = definition.args.safeParse(args);
  if (!result.success) {
    throw new UserInputError(
      `invalid ${what} arguments for provider \`${definition.name}\`: ${formatIssues(result.error)}. Accepted arguments: ${argNames(definition.args).join(', ') || '(none)'}.`,
    );
  }
  return result.data as Record<string, unknown>;
}

/** Validates an instance's settings with the provider's instance schema. */
export function validateInstance(definition: ProviderDefinition, instance: string, values: Record<string, unknown>): Record<string, unknown> {
  if (!definition.instance) return values;
  const result = definition.instance.safeParse(values);
  if (!result.success) {
    throw new SettingsError(
      `settings of provider \`${definition.name}\` instance \`${instance}\`: ${formatIssues(result.error, `${definition.name}.instances.${instance}`)}.`,
    );
  }
  return result.data as Record<string, unknown>;
}

/** Names of a zod object's keys (for help and error messages). */
export function argNames(schema: z.ZodType): string[] {
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

/** One argument's documentation, from the zod schema. */
export interface ArgumentDoc {
  name: string;
  type: string;
  required: boolean;
  description?: string;
  default?: unknown;
}

/** Documents a zod object's arguments through its JSON schema. */
export function describeArgs(schema: z.ZodType): ArgumentDoc[] {
  let json: { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  try {
    json = z.toJSONSchema(schema, { unrepresentable: 'any', io: 'input' }) as typeof json;
  } catch {
    return argNames(schema).map((name) => ({ name, type: 'unknown', required: false }));
  }
  return Object.entries(json.properties ?? {}).map(([name, prop]) => {
    const doc: ArgumentDoc = { name, type: typeName(prop), required: (json.required ?? []).includes(name) };
    if (typeof prop.description === 'string') doc.description = prop.description;
    if (prop.default !== undefined) doc.default = prop.default;
    return doc;
  });
}

function typeName(prop: Record<string, unknown>): string {
  if (Array.isArray(prop.enum)) return prop.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (typeof prop.type === 'string') return prop.type === 'array' && prop.items ? `${typeName(prop.items as Record<string, unknown>)}[]` : prop.type;
  if (Array.isArray(prop.type)) return prop.type.join(' | ');
  const union = (prop.anyOf ?? prop.oneOf) as Record<string, unknown>[] | undefined;
  if (union) return union.map(typeName).join(' | ');
  return 'any';
}
