/**
 * Bundles (as provision has them): named sets of public keys, files and scripts from settings,
 * applied to a host after provisioning and before `setup()`.
 *
 * ```yaml
 * bundles:
 *   dev:
 *     keys: [ "ssh-ed25519 AAAA... alice@laptop", keys/bob.pub ]
 *     files:
 *       - { source: files/screenrc, path: ~/.screenrc, mode: "0644" }
 *     scripts:
 *       - scripts/emacs.sh
 *       - { source: scripts/motd.sh, template: true }
 *       - { run: "echo ready > ~/ready" }
 * ```
 * Relative local paths are relative to the broker directory.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { lazySchema, z } from './zod.js';
import type { ConfigTarget } from '../hosts/config/target.js';
import { ensureFile } from '../hosts/config/remote.js';
import { CommandError, SettingsError, UserInputError } from './errors.js';
import { scrub } from './secrets.js';
import { Duration, formatIssues, toMs, type Settings } from './settings.js';

/** Octal file mode as a quoted string; YAML would read an unquoted 0644 as the decimal 644. */
const MODE_HINT = 'write the mode as a quoted octal string, e.g. "0644" (unquoted, YAML reads 0644 as the number 644)';
const Mode = lazySchema(() => z.string({ error: MODE_HINT }).regex(/^0?[0-7]{3}$|^[0-7]{4}$/, MODE_HINT));

/** A file a bundle copies to the host. */
export const BundleFile = lazySchema(() =>
  z.strictObject({
    /** Local file: absolute, `~/...`, or relative to the broker directory. */
    source: z.string().min(1),
    /** Remote path; `~/` is the login user's home. */
    path: z.string().min(1),
    mode: Mode.optional(),
    /** Render the file as a template with the bundle variables. */
    template: z.boolean().default(false),
  }),
);
export type BundleFile = z.output<typeof BundleFile>;

/** A script a bundle runs: a local file, or inline commands under `run`. */
export const BundleScript = lazySchema(() =>
  z.union([
    z.string().min(1),
    z
      .strictObject({
        source: z.string().min(1).optional(),
        run: z.string().min(1).optional(),
        /** Render as a template with the bundle variables (a file may also opt in with a `# hostbroker-template` line). */
        template: z.boolean().optional(),
        /** Limit for the script, e.g. `10m`. */
        timeout: Duration.optional(),
      })
      .refine((s) => (s.source === undefined) !== (s.run === undefined), 'give exactly one of `source` (a local file) or `run` (commands)'),
  ]),
);
export type BundleScript = z.output<typeof BundleScript>;

/** One bundle: keys, then files, then scripts, applied in that order. */
export const Bundle = lazySchema(() =>
  z.strictObject({
    description: z.string().optional(),
    /** Public keys appended to ~/.ssh/authorized_keys: the key text, or a local .pub file (one or more keys). */
    keys: z.array(z.string().min(1)).default([]),
    files: z.array(BundleFile).default([]),
    /** Run in order after the files; the first failure stops the bundle and fails the checkout. */
    scripts: z.array(BundleScript).default([]),
  }),
);
export type Bundle = z.output<typeof Bundle>;
/** A bundle as written in settings. */
export type BundleInput = z.input<typeof Bundle>;

/** Line that opts a script file into templating. */
export const TEMPLATE_MARKER = /^#\s*hostbroker-template\b/m;

const KEY_TEXT = /^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+/;

/** Validates the bundle `name` from settings; errors name the key (`bundles.dev.files.0.mode`). */
export function parseBundle(settings: Settings, name: string): Bundle {
  if (!Object.hasOwn(settings.bundles, name)) {
    const known = Object.keys(settings.bundles);
    throw new UserInputError(
      `there is no bundle \`${name}\`; ${known.length ? `known bundles: ${known.join(', ')}` : 'define it under `bundles:` in broker_settings.yaml'}.`,
    );
  }
  const parsed = Bundle.safeParse(settings.bundles[name]);
  if (!parsed.success) throw new SettingsError(`bundle \`${name}\` is not valid: ${formatIssues(parsed.error, `bundles.${name}`)}.`);
  return parsed.data;
}

/** Options for {@link applyBundles}. */
export interface ApplyBundlesOptions {
  /** Where relative local paths are found (the broker directory). Default: the current directory. */
  directory?: string;
}

/** The host being bundled: a target with a name (a Host has all of these). */
export type BundleTarget = ConfigTarget & { readonly name: string; readonly hostname: string; readonly id?: string; readonly provider?: string };

/**
 * Applies the named bundles to a host, in order: every bundle is validated first, then each one's
 * keys (idempotently), files and scripts. A failed script throws a CommandError with its output.
 */
export async function applyBundles(
  host: BundleTarget,
  names: readonly string[],
  settings: Settings,
  vars: Record<string, string>,
  options: ApplyBundlesOptions = {},
): Promise<void> {
  const bundles = names.map((name) => ({ name, bundle: parseBundle(settings, name) }));
  const directory = options.directory ?? process.cwd();
  const variables = bundleVariables(host, vars);
  let home: string | undefined;
  const remoteHome = async (): Promise<string> => {
    if (home === undefined) {
      const r = await host.session.run('printf %s "$HOME"');
      home = r.stdout.trim() || '/';
    }
    return home;
  };
  for (const { name, bundle } of bundles) {
    if (bundle.keys.length) await installKeys(host, name, await readKeys(name, bundle.keys, directory));
    for (const [i, file] of bundle.files.entries()) {
      const source = localPath(file.source, directory);
      let data = await readLocal(source, `bundles.${name}.files.${i}.source`);
      if (file.template) data = Buffer.from(await render(data.toString('utf8'), variables, `bundle \`${name}\` file ${file.source}`));
      const path = expand(file.path, await remoteHome());
      await ensureFile(host.session, path, data, file.mode !== undefined ? { mode: file.mode } : {});
    }
    for (const [i, script] of bundle.scripts.entries()) await runScript(host, name, i, script, directory, variables);
  }
}

/** Variables templated scripts and files see: host facts from the inventory, then the checkout's `bundleVars`. */
export function bundleVariables(host: BundleTarget, vars: Record<string, string>): Record<string, string> {
  return {
    name: host.name,
    shortName: host.name.split('.')[0] ?? host.name,
    hostname: host.hostname,
    ...(host.id ? { id: host.id } : {}),
    ...(host.provider ? { provider: host.provider } : {}),
    ...vars,
  };
}

async function readKeys(bundle: string, entries: readonly string[], directory: string): Promise<string[]> {
  const keys: string[] = [];
  for (const [i, entry] of entries.entries()) {
    if (KEY_TEXT.test(entry.trim())) {
      keys.push(entry.trim());
      continue;
    }
    const text = (await readLocal(localPath(entry, directory), `bundles.${bundle}.keys.${i}`)).toString('utf8');
    const found = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const bad = found.find((l) => !KEY_TEXT.test(l));
    if (bad !== undefined || !found.length) {
      throw new SettingsError(
        `bundles.${bundle}.keys.${i}: ${entry} does not hold OpenSSH public keys (lines like "ssh-ed25519 AAAA... comment"); give the .pub file, not a private key.`,
      );
    }
    keys.push(...found);
  }
  return keys;
}

/** Appends the keys that are missing to ~/.ssh/authorized_keys (0700 folder, 0600 file). */
async function installKeys(host: BundleTarget, bundle: string, keys: string[]): Promise<void> {
  const file = '"$HOME/.ssh/authorized_keys"';
  const script =
    `umask 077; mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh" && touch ${file} && chmod 600 ${file} || exit 1; ` +
    `if [ -s ${file} ] && [ -n "$(tail -c 1 ${file})" ]; then echo >> ${file}; fi; ` +
    `while IFS= read -r k; do [ -n "$k" ] || continue; grep -qxF -e "$k" ${file} || printf '%s\\n' "$k" >> ${file} || exit 1; done`;
  const r = await host.session.run(script, { input: `${keys.join('\n')}\n` });
  if (r.status !== 0) {
    throw new CommandError(
      `bundle \`${bundle}\`: cannot add its keys to ~/.ssh/authorized_keys on ${host.name}: ${scrub(r.stderr.trim() || `exit status ${r.status}`)}`,
      {
        ...r,
        command: 'append to ~/.ssh/authorized_keys',
      },
    );
  }
}

async function runScript(
  host: BundleTarget,
  bundle: string,
  index: number,
  script: BundleScript,
  directory: string,
  variables: Record<string, string>,
): Promise<void> {
  const spec = typeof script === 'string' ? { source: script } : script;
  const label = spec.source ?? `scripts.${index} (inline)`;
  let text =
    spec.source !== undefined ? (await readLocal(localPath(spec.source, directory), `bundles.${bundle}.scripts.${index}`)).toString('utf8') : spec.run!;
  const templated = spec.template ?? (spec.source !== undefined && TEMPLATE_MARKER.test(text));
  if (templated) text = await render(text, variables, `bundle \`${bundle}\` script ${label}`);
  // Scripts with a #! line run with their interpreter; others with sh. In the home folder, from a private temp file.
  const runner = text.startsWith('#!') ? '"$f"' : '/bin/sh "$f"';
  const command = `f=$(mktemp) && cat > "$f" && chmod 700 "$f" && cd "$HOME" && ${runner} < /dev/null; s=$?; rm -f -- "$f"; exit $s`;
  const r = await host.session.run(command, {
    input: text,
    ...(typeof script === 'object' && script.timeout !== undefined ? { timeout: toMs(script.timeout) } : {}),
  });
  if (r.status !== 0) {
    const output = scrub([r.stdout.trim(), r.stderr.trim()].filter(Boolean).join('\n')).split('\n').slice(-30).join('\n');
    throw new CommandError(
      `bundle \`${bundle}\` script ${label} failed on ${host.name} with exit status ${r.status}${output ? `:\n${output}` : ' and printed nothing'}\nFix the script (or the bundle in broker_settings.yaml) and check out again.`,
      {
        command: `bundle ${bundle}: ${label}`,
        status: r.status,
        stdout: scrub(r.stdout),
        stderr: scrub(r.stderr),
      },
    );
  }
}

async function render(text: string, variables: Record<string, string>, name: string): Promise<string> {
  const { renderTemplate } = await import('../hosts/config/templates.js');
  return renderTemplate(text, variables, { name });
}

function localPath(path: string, directory: string): string {
  if (path === '~' || path.startsWith('~/')) return resolve(homedir(), path.slice(2));
  return isAbsolute(path) ? path : resolve(directory, path);
}

async function readLocal(path: string, key: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new SettingsError(
      `${key}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); relative paths are relative to the broker directory.`,
      { cause: error },
    );
  }
}

function expand(path: string, home: string): string {
  if (path === '~') return home;
  return path.startsWith('~/') ? `${home.replace(/\/+$/, '')}/${path.slice(2)}` : path;
}
