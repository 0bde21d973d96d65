/**
 * Templates and expressions in scenarios, on hostbroker's template engine (nunjucks, strict about
 * undefined names). An expression is evaluated by the engine, never by `eval`: it is rendered as
 * `{{ (expr) | dump }}` and the JSON read back, so values keep their types (a list stays a list,
 * `"{{ COUNT }}"` gives the number).
 * @module
 */
import { renderTemplate } from '../../hosts/config/templates.js';
import { UserInputError, messageOf } from '../errors.js';

export type Scope = Record<string, unknown>;

/** A string that is one `{{ expression }}` and nothing else. */
const WHOLE = /^\s*\{\{([\s\S]*)\}\}\s*$/;

/** Says which step a template error came from. */
function inStep(error: unknown, where: string): never {
  throw new UserInputError(`step "${where}": ${messageOf(error).replace(/^template /, '')}`, { cause: error });
}

/** Evaluates an expression (`count * 2`, `previous_step.status == 'failed'`) to its value. */
export function evaluate(expression: string, scope: Scope, where: string): unknown {
  let text: string;
  try {
    text = renderTemplate(`{{ (${expression}) | dump }}`, scope, { name: 'expression' });
  } catch (error) {
    inStep(error, where);
  }
  return text === '' ? undefined : (JSON.parse(text) as unknown);
}

/** Renders a value: strings as templates (a whole `{{ expr }}` keeps its type), lists and maps deeply. */
export function render(value: unknown, scope: Scope, where: string): unknown {
  if (typeof value === 'string') {
    if (!value.includes('{{') && !value.includes('{%')) return value;
    const whole = WHOLE.exec(value);
    if (whole && !whole[1]!.includes('}}')) return evaluate(whole[1]!, scope, where);
    try {
      return renderTemplate(value, scope, { name: 'template' });
    } catch (error) {
      inStep(error, where);
    }
  }
  if (Array.isArray(value)) return value.map((v) => render(v, scope, where));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, render(v, scope, where)]));
  }
  return value;
}

/** Truth as Jinja has it: empty lists, maps and strings are false. */
export function truthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (value && typeof value === 'object') return Object.keys(value).length > 0;
  return Boolean(value);
}

/** Whether a `when` holds: a boolean as is, a string as an expression. */
export function holds(when: string | boolean | undefined, scope: Scope, where: string): boolean {
  if (when === undefined) return true;
  if (typeof when === 'boolean') return when;
  const inner = WHOLE.exec(when)?.[1] ?? when;
  return truthy(evaluate(inner, scope, where));
}

/** A plain, JSON-safe copy of a value for the template scope (class instances become their JSON). */
export function plain(value: unknown): unknown {
  return value === undefined ? undefined : (JSON.parse(JSON.stringify(value)) as unknown);
}
