/**
 * Optional packages (provider SDKs, engine clients, native bindings) that the user installs for
 * the providers they use: whether one is installed, and the error that says what to install.
 * @module
 */
import { createRequire } from 'node:module';
import { MissingDependencyError } from './errors.js';

/**
 * Whether `name` resolves from hostbroker's own location, as its lazy `import()` will. Nothing is
 * loaded: an SDK can take longer to import than the whole of hostbroker.
 */
export function isInstalled(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch (error) {
    // Installed, with no CommonJS entry (an ES-module-only package such as @unraid/libvirt).
    return (error as { code?: string }).code === 'ERR_PACKAGE_PATH_NOT_EXPORTED';
  }
}

/** Each package and whether it is installed. */
export function packageStatus(names: readonly string[]): { name: string; installed: boolean }[] {
  return names.map((name) => ({ name, installed: isInstalled(name) }));
}

/** Throws a MissingDependencyError naming every package of `names` that is not installed. */
export function requirePackages(names: readonly string[], neededFor: string): void {
  const missing = names.filter((n) => !isInstalled(n));
  if (missing.length) throw new MissingDependencyError(missing.join(' '), neededFor);
}
