/**
 * The scenario file format (Broker's scenarios, version 2): `config`, `variables` and `steps`,
 * checked with zod before anything runs. Every problem names its step and key, so `hostbroker
 * scenario validate` can list them all at once.
 * @module
 */
import { lazySchema, z } from '../zod.js';
import type { ScenarioProblem } from './errors.js';
import { Duration } from '../settings.js';

/** The actions a step may take, with the names Broker's scenarios also use. */
export const ACTIONS = [
  'checkout',
  'checkin',
  'execute',
  'run',
  'upload',
  'download',
  'up',
  'destroy',
  'apply',
  'providers',
  'inventory',
  'output',
  'exit',
  'run_scenarios',
] as const;
export type ActionName = (typeof ACTIONS)[number];

/** Broker's names for the same actions, accepted so its scenario files run unchanged. */
export const ACTION_ALIASES: Readonly<Record<string, ActionName>> = { ssh: 'run', scp: 'upload', provider_info: 'providers' };

const Identifier = lazySchema(() => z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a name of letters, digits and _ (not starting with a digit)'));

const Loop = lazySchema(() =>
  z
    .object({
      /** A list, a variable or expression (`PACKAGES`, `results.items()`), or hosts (`@scenario_inv[:]`). */
      iterable: z.union([z.string().min(1), z.array(z.unknown())]),
      /** The loop variable; `key, value` unpacks pairs (from `.items()`). */
      iter_var: z
        .string()
        .regex(/^\s*[A-Za-z_][A-Za-z0-9_]*(\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*\s*$/, 'a name, or names separated by commas')
        .default('item'),
      on_error: z.literal('continue').optional(),
    })
    .strict(),
);

const Capture = lazySchema(() =>
  z
    .object({
      as: Identifier,
      /** An expression over `step.output` whose value is captured instead. */
      transform: z.string().optional(),
      /** In a loop: an expression giving each iteration's key (default: the item itself). */
      key: z.string().optional(),
    })
    .strict(),
);

const Retry = lazySchema(() =>
  z
    .object({
      count: z.number().int().min(1).max(100),
      delay: Duration.default('1s'),
    })
    .strict(),
);

/** One step. */
export interface Step {
  name: string;
  action: ActionName;
  arguments: Record<string, unknown>;
  with?: { hosts: string | number | string[]; filter?: string };
  when?: string | boolean;
  loop?: z.infer<typeof Loop>;
  parallel: boolean;
  capture?: z.infer<typeof Capture>;
  on_error?: 'continue' | Step[];
  exit_on_error: boolean;
  retry?: z.infer<typeof Retry>;
  timeout?: Duration;
}

export const Step: z.ZodType<Step, unknown> = lazySchema(() =>
  z.lazy(() =>
    z
      .object({
        name: z.string().min(1),
        action: z.preprocess((a) => (typeof a === 'string' ? (ACTION_ALIASES[a] ?? a) : a), z.enum(ACTIONS)),
        arguments: z.record(z.string(), z.unknown()).default({}),
        with: z
          .object({
            hosts: z.union([z.string().min(1), z.number().int(), z.array(z.string().min(1))]),
            /** A filter in hostbroker's syntax over the hosts selected. */
            filter: z.string().optional(),
          })
          .strict()
          .optional(),
        when: z.union([z.string().min(1), z.boolean()]).optional(),
        loop: Loop.optional(),
        parallel: z.boolean().default(true),
        capture: Capture.optional(),
        on_error: z.union([z.literal('continue'), z.array(Step).min(1)]).optional(),
        exit_on_error: z.boolean().default(true),
        retry: Retry.optional(),
        timeout: Duration.optional(),
      })
      .strict(),
  ),
);

export const ScenarioConfig = lazySchema(() =>
  z
    .object({
      /** Settings over `broker_settings.yaml` for this scenario (as in `new Broker({ settings })`). */
      settings: z.record(z.string(), z.unknown()).optional(),
      /** The `inventory` settings (e.g. an etcd store) for this scenario. */
      inventory: z.record(z.string(), z.unknown()).optional(),
      /** Another broker directory (settings and inventory) for this scenario. */
      directory: z.string().min(1).optional(),
      /** Where the step log goes: a file name (in `<directory>/logs/`), a path, or a directory. */
      log_file: z.string().min(1).optional(),
    })
    .strict(),
);

export const ScenarioFile = lazySchema(() =>
  z
    .object({
      name: z.string().optional(),
      description: z.string().optional(),
      config: ScenarioConfig.default({}),
      variables: z.record(z.string(), z.unknown()).default({}),
      steps: z.array(Step).min(1, 'a scenario needs at least one step'),
    })
    .strict(),
);
export type ScenarioFile = z.infer<typeof ScenarioFile>;

/** What each action needs in `arguments` (checked before the run; values may be templates). */
const REQUIRED: Partial<Record<ActionName, readonly string[]>> = {
  run: ['command'],
  upload: ['source', 'destination'],
  download: ['source', 'destination'],
  up: ['metadata'],
  apply: ['mode'],
  execute: ['provider', 'action'],
  output: ['content'],
  run_scenarios: ['paths'],
};
/** Actions that work on hosts and so need `with.hosts`. */
export const HOST_ACTIONS: ReadonlySet<ActionName> = new Set(['checkin', 'run', 'upload', 'download', 'apply']);

/** The step's label in messages: its name, or `#N` (1-based) when the name is missing. */
function stepLabel(raw: unknown, index: number): string {
  const name = (raw as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' && name ? name : `#${index + 1}`;
}

/** Walks a zod issue path to the innermost step it is in, and the key below it. */
function locate(root: unknown, path: readonly PropertyKey[]): { step?: string; key: string } {
  let node: unknown = root;
  let step: string | undefined;
  let keyFrom = 0;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i]!;
    const parent = path[i - 1];
    if (typeof segment === 'number' && (parent === 'steps' || parent === 'on_error')) {
      const label = stepLabel((node as unknown[] | undefined)?.[segment], segment);
      step = step && parent === 'on_error' ? `${step} > ${label}` : label;
      keyFrom = i + 1;
    }
    node = (node as Record<PropertyKey, unknown> | undefined)?.[segment];
  }
  const key = path.slice(keyFrom).map(String).join('.');
  return { ...(step ? { step } : {}), key: key || (step ? 'step' : 'file') };
}

/** Checks what zod cannot (on the raw file, so these come with zod's own problems): required arguments, hosts, unique names. */
function semanticProblems(steps: unknown, problems: ScenarioProblem[], parent?: string, names = new Set<string>()): void {
  if (!Array.isArray(steps)) return;
  for (const [index, raw] of steps.entries()) {
    if (!raw || typeof raw !== 'object') continue;
    const step = raw as { name?: unknown; action?: unknown; arguments?: unknown; with?: unknown; on_error?: unknown };
    const own = stepLabel(step, index);
    const label = parent ? `${parent} > ${own}` : own;
    if (typeof step.name === 'string') {
      if (names.has(step.name))
        problems.push({ step: label, key: 'name', message: 'another step has this name; names must be unique (they key `steps.<name>`)' });
      names.add(step.name);
    }
    const action = typeof step.action === 'string' ? (ACTION_ALIASES[step.action] ?? step.action) : undefined;
    if (action && (ACTIONS as readonly string[]).includes(action)) {
      const args = step.arguments && typeof step.arguments === 'object' ? (step.arguments as Record<string, unknown>) : {};
      for (const key of REQUIRED[action as ActionName] ?? []) {
        if (args[key] === undefined) problems.push({ step: label, key: `arguments.${key}`, message: `the ${action} action needs \`${key}\`` });
      }
      if (HOST_ACTIONS.has(action as ActionName) && step.with === undefined) {
        problems.push({
          step: label,
          key: 'with.hosts',
          message: `the ${action} action needs hosts: say \`with: { hosts: scenario_inventory }\` (or a slice or a filter)`,
        });
      }
      if (action === 'apply' && args.plan === undefined && args.steps === undefined) {
        problems.push({ step: label, key: 'arguments.plan', message: 'apply needs `plan` (a module exporting a SitePlan) or `steps` (whiteprints by name)' });
      }
    }
    semanticProblems(step.on_error, problems, label, names);
  }
}

/** Validates a parsed file: the typed scenario, or every problem found. */
export function checkScenario(raw: unknown): { scenario: ScenarioFile; problems: [] } | { scenario?: undefined; problems: ScenarioProblem[] } {
  const parsed = ScenarioFile.safeParse(raw);
  const problems: ScenarioProblem[] = parsed.success
    ? []
    : parsed.error.issues.flatMap((issue) =>
        // One problem per unknown key, named by its own path (`bogus`, `retry.tries`).
        issue.code === 'unrecognized_keys'
          ? issue.keys.map((k) => ({ ...locate(raw, [...issue.path, k]), message: `unknown key \`${k}\` (a typo, or a key of another place?)` }))
          : [{ ...locate(raw, issue.path), message: issue.message }],
      );
  semanticProblems((raw as { steps?: unknown } | undefined)?.steps, problems);
  return parsed.success && !problems.length ? { scenario: parsed.data, problems: [] } : { problems };
}
