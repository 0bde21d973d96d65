/**
 * Templates: nunjucks with jinja2 compatibility, strict about undefined variables.
 *
 * Jinja2's StrictUndefined is what users expect: `{{ missing }}` is an error, `{% if missing %}`
 * is simply false, and `missing|default('x')` and `missing is defined` work. nunjucks has no such
 * mode (`throwOnUndefined` only checks printed values and says neither which name nor where),
 * so the template's syntax tree is checked before rendering: every variable it reads must be
 * given, bound in the template (set, for, macro, import), or be a global, unless it is only
 * truth-tested (if/elif/inline-if conditions, through not/and/or), tested with `is`, or the
 * subject of a `default` filter. Printing an undefined attribute (`{{ a.missing }}`) is caught
 * at render time.
 * @module
 */
import { createRequire } from 'node:module';
import type NunjucksModule from 'nunjucks';
import { UserInputError } from '../../lib/errors.js';

type Nunjucks = typeof NunjucksModule;
let loaded: Nunjucks | undefined;
/** nunjucks is loaded on first use, so importing hostbroker does not pay for it. */
function nunjucks(): Nunjucks {
  if (!loaded) {
    loaded = createRequire(import.meta.url)('nunjucks') as Nunjucks;
    loaded.installJinjaCompat();
  }
  return loaded;
}

// Names jinja-compat resolves itself, and nunjucks' own globals.
const BUILTIN_NAMES = new Set(['True', 'False', 'None', 'loop', 'caller', 'super']);

/** Options for {@link renderTemplate}. */
export interface RenderOptions {
  /** Name for messages (a file path or `string template`). */
  name?: string;
}

let environment: NunjucksModule.Environment | undefined;
function env(): NunjucksModule.Environment {
  environment ??= new (nunjucks().Environment)(null, { autoescape: false, throwOnUndefined: true, trimBlocks: false });
  return environment;
}

/**
 * Renders a template with variables. A variable the template needs but `vars` lacks is a
 * {@link UserInputError} naming it and its line; a syntax error names the template too.
 */
export function renderTemplate(source: string, vars: Record<string, unknown>, options: RenderOptions = {}): string {
  const name = options.name ?? 'template';
  let root: TemplateNode;
  try {
    root = (nunjucks() as unknown as { parser: { parse(src: string): TemplateNode } }).parser.parse(source);
  } catch (error) {
    throw new UserInputError(`${name} is not a valid template: ${cleanMessage(error)}`, { cause: error });
  }
  const missing = undefinedNames(root, vars);
  if (missing.length) {
    const list = missing.map((m) => `\`${m.name}\` (line ${m.line})`).join(', ');
    throw new UserInputError(
      `${name} uses ${missing.length === 1 ? 'a variable that is' : 'variables that are'} not defined: ${list}. Give ${missing.length === 1 ? 'it a value' : 'them values'} in the config, or write {{ name | default('...') }} / {% if name %} where it is optional.`,
    );
  }
  try {
    return env().renderString(source, vars);
  } catch (error) {
    const msg = cleanMessage(error);
    if (/attempted to output null or undefined value/.test(msg)) {
      throw new UserInputError(
        `${name} prints a value that is undefined or null (${msg.split('attempted')[0]!.replace(/[[\]]/g, '').trim().toLowerCase() || 'somewhere'}); check the attribute names it uses, or add | default('...').`,
        { cause: error },
      );
    }
    throw new UserInputError(`${name} could not be rendered: ${msg}`, { cause: error });
  }
}

function cleanMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error))
    .replace(/\(unknown path\)\s*/g, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

/** The parts of nunjucks' node objects the check reads. */
interface TemplateNode {
  typename: string;
  fields: string[];
  children?: TemplateNode[];
  value?: unknown;
  lineno: number;
  [field: string]: unknown;
}

function undefinedNames(root: TemplateNode, vars: Record<string, unknown>): Array<{ name: string; line: number }> {
  const bound = new Set<string>();
  collectBound(root, bound);
  const globals = (env() as unknown as { globals: Record<string, unknown> }).globals;
  const out = new Map<string, number>();
  const check = (node: TemplateNode): void => {
    const n = String(node.value);
    if (n in vars || bound.has(n) || BUILTIN_NAMES.has(n) || n in globals) return;
    if (!out.has(n)) out.set(n, node.lineno + 1);
  };
  walk(root, false, check);
  return [...out].map(([name, line]) => ({ name, line }));
}

function isNode(v: unknown): v is TemplateNode {
  return typeof v === 'object' && v !== null && typeof (v as TemplateNode).typename === 'string';
}

function kids(node: TemplateNode): TemplateNode[] {
  const out: TemplateNode[] = [];
  if (Array.isArray(node.children)) out.push(...node.children.filter(isNode));
  for (const f of node.fields ?? []) {
    const v = node[f];
    if (isNode(v)) out.push(v);
    else if (Array.isArray(v)) out.push(...v.filter(isNode));
  }
  return out;
}

/** Names the template binds itself anywhere (an over-approximation of scope, which is safe). */
function collectBound(node: TemplateNode, bound: Set<string>): void {
  const symbols = (n: unknown): void => {
    if (Array.isArray(n)) return n.forEach(symbols);
    if (!isNode(n)) return;
    if (n.typename === 'Symbol') bound.add(String(n.value));
    else if (n.typename === 'Pair') {
      symbols(n.key);
      symbols(n.value);
    } else for (const c of kids(n)) symbols(c);
  };
  switch (node.typename) {
    case 'For':
    case 'AsyncEach':
    case 'AsyncAll':
      symbols(node.name);
      break;
    case 'Set':
      symbols(node.targets);
      break;
    case 'Macro':
    case 'Caller':
      symbols(node.name);
      symbols(node.args);
      break;
    case 'Import':
      symbols(node.target);
      break;
    case 'FromImport':
      symbols(node.names);
      break;
  }
  for (const c of kids(node)) collectBound(c, bound);
}

/** Visits variable reads; `lenient` marks places where an undefined name is allowed. */
function walk(node: TemplateNode, lenient: boolean, check: (symbol: TemplateNode) => void): void {
  switch (node.typename) {
    case 'Symbol':
      if (!lenient) check(node);
      return;
    case 'If':
    case 'IfAsync':
    case 'InlineIf':
      walkIf(node.cond, true, check);
      for (const f of ['body', 'else_']) if (isNode(node[f])) walk(node[f] as TemplateNode, false, check);
      return;
    case 'Is':
      // `x is defined`, `x is none`: tests never fail on an undefined subject.
      if (isNode(node.left)) walk(node.left, true, check);
      return;
    case 'Filter':
    case 'FilterAsync': {
      const filter = isNode(node.name) ? String(node.name.value) : '';
      const args = isNode(node.args) ? (node.args.children ?? []) : [];
      args.forEach((a, i) => {
        walk(a, i === 0 && (filter === 'default' || filter === 'd'), check);
      });
      return;
    }
    case 'FunCall':
      if (isNode(node.name)) walk(node.name, false, check);
      if (isNode(node.args)) walk(node.args, false, check);
      return;
    case 'LookupVal':
      if (isNode(node.target)) walk(node.target, lenient, check);
      return;
    case 'Pair':
      // Dict keys and keyword-argument names are not variable reads.
      if (isNode(node.key) && node.key.typename !== 'Symbol') walk(node.key, false, check);
      if (isNode(node.value)) walk(node.value, false, check);
      return;
    case 'For':
    case 'AsyncEach':
    case 'AsyncAll':
      if (isNode(node.arr)) walk(node.arr, false, check);
      for (const f of ['body', 'else_']) if (isNode(node[f])) walk(node[f] as TemplateNode, false, check);
      return;
    case 'Set':
      if (isNode(node.value)) walk(node.value, false, check);
      if (isNode(node.body)) walk(node.body, false, check);
      return;
    case 'Macro':
    case 'Caller':
      if (isNode(node.args)) walk(node.args, true, check);
      if (isNode(node.body)) walk(node.body, false, check);
      return;
    case 'Import':
    case 'FromImport':
    case 'Block':
      if (node.typename === 'Block' && isNode(node.body)) walk(node.body, false, check);
      return;
  }
  for (const c of kids(node)) walk(c, false, check);
}

/** A condition: names directly tested (also through not/and/or) may be undefined. */
function walkIf(cond: unknown, lenient: boolean, check: (symbol: TemplateNode) => void): void {
  if (!isNode(cond)) return;
  if (cond.typename === 'Not') return walkIf(cond.target, lenient, check);
  if (cond.typename === 'And' || cond.typename === 'Or') {
    walkIf(cond.left, lenient, check);
    walkIf(cond.right, lenient, check);
    return;
  }
  if (cond.typename === 'Group' && cond.children?.length === 1) return walkIf(cond.children[0], lenient, check);
  walk(cond, lenient && (cond.typename === 'Symbol' || cond.typename === 'LookupVal'), check);
}
