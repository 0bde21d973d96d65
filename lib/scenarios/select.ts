/**
 * Which hosts a step works on (`with.hosts`): the scenario's own (`scenario_inventory`), the
 * whole inventory (`inventory`), an index or slice of either (`@scenario_inv[0]`, `@inv[1:3]`),
 * host values from a template (`{{ current_host }}`), names or ids, or a filter in hostbroker's
 * syntax (`name<web,provider=local`) over the whole inventory.
 * @module
 */
import type { Host } from '../../hosts/host.js';
import { UserInputError } from '../errors.js';
import { applyFilter } from '../filter.js';
import type { HostRecord } from '../records.js';
import type { Step } from './schema.js';
import type { ScenarioState } from './state.js';
import { render, type Scope } from './template.js';

const SLICE = /^@(scenario_inv|inv)(?:\[\s*(-?\d*)\s*(?:(:)\s*(-?\d*)\s*)?\])?$/;

/** The records of the scenario's own hosts, in checkout order. */
export function scenarioRecords(state: ScenarioState): HostRecord[] {
  return [...state.hosts.values()].map((h) => h.record);
}

/** Python-style index or slice of a list. */
function slice<T>(list: readonly T[], start: string | undefined, colon: string | undefined, end: string | undefined, where: string): T[] {
  const at = (s: string | undefined, fallback: number): number => {
    if (s === undefined || s === '') return fallback;
    const n = Number(s);
    return n < 0 ? Math.max(list.length + n, 0) : Math.min(n, list.length);
  };
  if (!colon) {
    if (start === undefined) return [...list];
    const i = Number(start) < 0 ? list.length + Number(start) : Number(start);
    const item = list[i];
    if (item === undefined) throw new UserInputError(`step "${where}": host index ${start} is out of range: there are ${list.length} host(s).`);
    return [item];
  }
  return list.slice(at(start, 0), at(end, list.length));
}

/** Hosts from the `@scenario_inv[...]` / `@inv[...]` forms, or undefined for anything else. */
export async function sliceOf(state: ScenarioState, text: string, where: string): Promise<HostRecord[] | undefined> {
  const named = text === 'scenario_inventory' ? '@scenario_inv' : text === 'inventory' ? '@inv' : text;
  const m = SLICE.exec(named.trim());
  if (!m) return undefined;
  const list = m[1] === 'scenario_inv' ? scenarioRecords(state) : await state.broker.inventory();
  return slice(list, m[2], m[3], m[4], where);
}

/** Records for values a template gave: records (objects with an id), ids or names. */
async function fromValues(state: ScenarioState, values: unknown[], where: string): Promise<HostRecord[]> {
  const all = await state.broker.inventory();
  return values.map((value) => {
    const key = value && typeof value === 'object' ? (value as { id?: unknown }).id : value;
    const found = all.find((r) => r.id === key) ?? all.find((r) => r.name === key) ?? all.find((r) => r.hostname === key);
    if (!found) throw new UserInputError(`step "${where}": no host ${JSON.stringify(key)} in the inventory; give a host from a checkout, a name or an id.`);
    return found;
  });
}

/** A slice form, a host's name or id, else a filter over the whole inventory. */
async function fromText(state: ScenarioState, text: string, where: string): Promise<HostRecord[]> {
  const sliced = await sliceOf(state, text, where);
  if (sliced) return sliced;
  const all = await state.broker.inventory();
  const named = all.filter((r) => r.id === text || r.name === text);
  return named.length ? named : applyFilter(all, text);
}

/** The records a step's `with` selects. */
export async function selectRecords(state: ScenarioState, spec: NonNullable<Step['with']>, scope: Scope, where: string): Promise<HostRecord[]> {
  let records: HostRecord[];
  const hosts = spec.hosts;
  if (typeof hosts === 'number') {
    records = slice(scenarioRecords(state), String(hosts), undefined, undefined, where);
  } else if (Array.isArray(hosts)) {
    records = await fromValues(
      state,
      hosts.flatMap((h) => render(h, scope, where)),
      where,
    );
  } else if (hosts.includes('{{')) {
    const value = render(hosts, scope, where);
    records = typeof value === 'string' ? await fromText(state, value, where) : await fromValues(state, Array.isArray(value) ? value : [value], where);
  } else {
    records = await fromText(state, hosts, where);
  }
  if (spec.filter) records = applyFilter(records, spec.filter);
  if (!records.length)
    throw new UserInputError(`step "${where}": \`with.hosts\` selects no host (${JSON.stringify(hosts)}); check out hosts first or widen the selection.`);
  return records;
}

/** Live Hosts for records: the scenario's own objects, or new ones from the Broker. */
export function liveHosts(state: ScenarioState, records: readonly HostRecord[]): Host[] {
  return records.map((r) => state.hosts.get(r.id) ?? state.broker.reconstruct(r));
}
