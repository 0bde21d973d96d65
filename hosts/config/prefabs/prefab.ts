/**
 * Base of the built-in prefabs: each works out what differs from the wanted state first, then
 * either does it (`execute`, reported as changes) or reports it (`validate`, as drift). Doing
 * nothing when nothing differs is what makes them idempotent.
 * @module
 */
import { quote } from '../../quote.js';
import type { Result } from '../../result.js';
import { commandError } from '../remote.js';
import { Whiteprint, type Config } from '../whiteprint.js';

/** One thing a prefab would do to reach the wanted state. */
export interface PrefabAction {
  /** What differs, e.g. `/srv/app does not exist`. Reported as drift by validate. */
  description: string;
  /** Does it; may return more precise change descriptions. */
  // biome-ignore lint/suspicious/noConfusingVoidType: an action may return nothing or the lines it changed
  run(): Promise<string[] | void>;
}

/** The modes prefabs act on: `install` and `update` make things present, `clean` removes them. */
export type PrefabMode = 'install' | 'update' | 'clean';

/**
 * Base class of prefabs. Prefabs find resource files in the folder of the whiteprint that uses
 * them. Subclasses implement {@link actions}.
 */
export abstract class Prefab<C extends object = Config> extends Whiteprint<C> {
  static readonly usesParentResources = true;

  /** What must be done for `mode` (empty: the host is already as wanted). */
  protected abstract actions(mode: string): Promise<PrefabAction[]>;

  override async execute(mode: string): Promise<void> {
    for (const action of await this.actions(mode)) {
      const detail = await action.run();
      for (const d of detail?.length ? detail : [action.description]) this.changed(d);
    }
  }

  override async validate(mode: string): Promise<void> {
    for (const action of await this.actions(mode)) this.drift(action.description);
  }

  /** True for `install` and `update`. */
  protected wantsPresent(mode: string): boolean {
    return mode === 'install' || mode === 'update';
  }

  /** Runs a command that only looks (no change is recorded); any status is returned. */
  protected look(command: string): Promise<Result> {
    return this.exec(command, { errorOk: true, changed: false });
  }

  /** Runs a command that must succeed; changes are recorded by the caller's action. */
  protected async run(command: string, options: { env?: Record<string, string>; sudo?: boolean } = {}): Promise<Result> {
    // sudo resets the environment, so variables are set inside the privileged shell.
    const env = Object.entries(options.env ?? {})
      .map(([k, v]) => `export ${k}=${quote(v)}; `)
      .join('');
    const full = options.sudo ? `sudo -n sh -c ${quote(env + command)}` : env + command;
    const r = await this.host.session.run(full);
    if (r.status !== 0) throw commandError(`${this.name}: a command failed`, r, this.host.session);
    return r;
  }

  /** Whether privileged commands need `sudo` (`auto`: when the login user is not root). */
  protected needsSudo(setting: boolean | 'auto' | undefined): boolean {
    return setting === true || ((setting === undefined || setting === 'auto') && this.target.user !== 'root');
  }
}
