/**
 * Bundles (as provision does): named sets of keys, files and scripts from settings, applied to a
 * host after provisioning and before `setup()`.
 * @module
 */
import type { Host } from '../hosts/host.js';
import { UserInputError } from './errors.js';
import type { Settings } from './settings.js';

/** Applies the named bundles to a host, in order. */
export async function applyBundles(host: Host, names: readonly string[], settings: Settings, vars: Record<string, string>): Promise<void> {
  void host;
  void vars;
  for (const name of names) {
    if (!(name in settings.bundles)) throw new UserInputError(`there is no bundle \`${name}\`; define it under \`bundles:\` in broker_settings.yaml.`);
  }
  throw new UserInputError('bundles are not available in this build yet.');
}
