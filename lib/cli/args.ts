/**
 * Provider arguments on the command line: `--key value`, `--key=value`, `--flag`, `--no-flag`,
 * typed by the provider's zod schema (numbers, booleans, JSON/YAML for objects and lists, or a
 * JSON/YAML file whose content becomes the value).
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseYamlStrict as parseYaml } from '../yaml.js';
import { UserInputError } from '../errors.js';
import type { ArgumentDoc } from '../requests.js';

/** `instance-type` → `instanceType`. */
function camel(name: string): string {
  return name.replace(/[-_]([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function findDoc(docs: readonly ArgumentDoc[], flag: string): ArgumentDoc | undefined {
  return (
    docs.find((d) => d.name === flag) ??
    docs.find((d) => d.name === camel(flag)) ??
    docs.find((d) => d.name.toLowerCase() === flag.replace(/[-_]/g, '').toLowerCase())
  );
}

const isBooleanType = (t: string): boolean => /\bboolean\b/.test(t);
const isNumberType = (t: string): boolean => /\b(number|integer)\b/.test(t);
const isStructured = (t: string): boolean => /\b(object|array|any|unknown)\b|\[\]/.test(t);
const isList = (t: string): boolean => /\[\]|\barray\b/.test(t);
/** Every alternative of the type is a list: a lone value becomes a one-item list. */
const onlyList = (t: string): boolean => t.split(' | ').every((alt) => alt.endsWith('[]') || alt === 'array');

/** Converts one string to what the argument's type wants; the provider's schema has the last word. */
export function coerce(value: string, doc: ArgumentDoc, flag: string): unknown {
  const t = doc.type;
  if (isNumberType(t) && /^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  if (isBooleanType(t) && /^(true|false|yes|no)$/i.test(value)) return /^(true|yes)$/i.test(value);
  if (isStructured(t)) {
    if (/\.(json|ya?ml)$/i.test(value) && existsSync(value)) return parseStructured(readFileSync(value, 'utf8'), flag, value);
    if (/^\s*[[{]/.test(value)) return parseStructured(value, flag);
    // `k=v,k2=v2` for string maps such as labels or tags.
    if (/\bobject\b/.test(t) && /^[\w./-]+=[^,]*(,[\w./-]+=[^,]*)*$/.test(value)) {
      return Object.fromEntries(value.split(',').map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
    }
  }
  if (isNumberType(t) && !/\bstring\b/.test(t)) throw new UserInputError(`option --${flag} takes a number (${t}), not ${JSON.stringify(value)}.`);
  if (isBooleanType(t) && !/\bstring\b/.test(t) && !isStructured(t))
    throw new UserInputError(`option --${flag} takes true or false, not ${JSON.stringify(value)}.`);
  return value;
}

function parseStructured(text: string, flag: string, file?: string): unknown {
  try {
    return parseYaml(text);
  } catch (error) {
    throw new UserInputError(
      `option --${flag}: ${file ? `the file ${file}` : 'the value'} is neither JSON nor YAML (${(error as Error).message.split('\n')[0]}).`,
    );
  }
}

/**
 * Parses leftover command-line tokens into arguments of a provider (or action) with these docs.
 * Unknown names and values of the wrong type fail with a message that names the option.
 */
export function parseProviderOptions(tokens: readonly string[], docs: readonly ArgumentDoc[], what: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const accepted = (): string => (docs.length ? docs.map((d) => `--${d.name}`).join(', ') : 'none');
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (!token.startsWith('--') || token === '--') {
      throw new UserInputError(`unexpected argument ${JSON.stringify(token)}: ${what} takes options of the form --name value (accepted: ${accepted()}).`);
    }
    let flag = token.slice(2);
    let value: string | undefined;
    const eq = flag.indexOf('=');
    if (eq >= 0) {
      value = flag.slice(eq + 1);
      flag = flag.slice(0, eq);
    }
    let doc = findDoc(docs, flag);
    let negated = false;
    if (!doc && flag.startsWith('no-')) {
      doc = findDoc(docs, flag.slice(3));
      negated = doc !== undefined && isBooleanType(doc.type);
      if (!negated) doc = undefined;
    }
    if (!doc) throw new UserInputError(`unknown option --${flag} for ${what}; accepted: ${accepted()}. See \`hostbroker providers <name>\`.`);
    let parsed: unknown;
    if (negated) {
      if (value !== undefined) throw new UserInputError(`option --${flag} takes no value.`);
      parsed = false;
    } else if (value === undefined && (i + 1 >= tokens.length || tokens[i + 1]!.startsWith('--'))) {
      if (!isBooleanType(doc.type)) throw new UserInputError(`option --${flag} needs a value (${doc.type}).`);
      parsed = true;
    } else {
      parsed = coerce(value ?? tokens[++i]!, doc, flag);
    }
    const key = doc.name;
    if (key in out && isList(doc.type)) {
      const prev = out[key];
      out[key] = [...(Array.isArray(prev) ? prev : [prev]), ...(Array.isArray(parsed) ? parsed : [parsed])];
    } else if (key in out) {
      throw new UserInputError(`option --${flag} was given twice.`);
    } else {
      out[key] = onlyList(doc.type) && !Array.isArray(parsed) ? [parsed] : parsed;
    }
  }
  return out;
}
