/**
 * Inventory filters in the seed's syntax: `key<value` (contains), `key=value`, `key{value`
 * (starts with), `key}value` (ends with); `!` before the operator negates; `,` joins with AND;
 * dotted keys reach nested fields (`recipe.args.image<busybox`).
 * @module
 */
import { UserInputError } from './errors.js';

/** A filter string, or a predicate over records. */
export type Filter<T = Record<string, unknown>> = string | ((record: T) => boolean);

/** Filter operators: contains, equals, starts with, ends with. */
export type FilterOperator = '<' | '=' | '{' | '}';
/** One parsed clause of a filter: `path op value`, maybe negated. */
export interface FilterCondition {
  path: string[];
  op: FilterOperator;
  negate: boolean;
  value: string;
}

const KEY = /^[A-Za-z0-9_.-]+$/;

/** Parses a filter string; a malformed one is a UserInputError that says which part is wrong. */
export function parseFilter(text: string): FilterCondition[] {
  if (text.trim() === '') throw new UserInputError('the filter is empty: write e.g. `name<web` or `provider=container,hostname{10.`.');
  return text.split(',').map((part) => {
    const clause = part.trim();
    const at = clause.search(/!?[<={}]/);
    if (at <= 0) {
      throw new UserInputError(
        `filter clause ${JSON.stringify(clause)} has no key and operator: write key<value (contains), key=value, key{value (starts with), key}value (ends with), with ! before the operator to negate.`,
      );
    }
    const key = clause.slice(0, at);
    const negate = clause[at] === '!';
    const op = clause[negate ? at + 1 : at] as FilterOperator;
    const value = clause.slice(at + (negate ? 2 : 1));
    if (!KEY.test(key)) throw new UserInputError(`filter key ${JSON.stringify(key)} is not valid: use letters, digits, _ - and . for nested fields.`);
    return { path: key.split('.'), op, negate, value };
  });
}

/** Builds a predicate from a filter string or passes a predicate through. */
export function compileFilter<T>(filter: Filter<T>): (record: T) => boolean {
  if (typeof filter === 'function') return filter;
  if (typeof filter !== 'string') throw new UserInputError(`a filter must be a string or a function, not ${typeof filter}.`);
  const conditions = parseFilter(filter);
  return (record) => conditions.every((c) => test(c, lookup(record, c.path)));
}

/** Applies a filter to a list. */
export function applyFilter<T>(records: readonly T[], filter: Filter<T> | undefined): T[] {
  if (filter === undefined) return [...records];
  const predicate = compileFilter(filter);
  return records.filter((r) => predicate(r));
}

function lookup(record: unknown, path: string[]): unknown {
  let node: unknown = record;
  for (const segment of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[segment];
  }
  return node;
}

function test(c: FilterCondition, actual: unknown): boolean {
  const text = actual === undefined || actual === null ? '' : typeof actual === 'object' ? JSON.stringify(actual) : String(actual);
  let hit: boolean;
  switch (c.op) {
    case '<':
      hit = Array.isArray(actual) ? actual.map(String).includes(c.value) || text.includes(c.value) : text.includes(c.value);
      break;
    case '=':
      hit = text === c.value;
      break;
    case '{':
      hit = text.startsWith(c.value);
      break;
    case '}':
      hit = text.endsWith(c.value);
      break;
  }
  return c.negate ? !hit : hit;
}
