/**
 * Resource lookup (as marchitect's rsrc_paths): a relative file is looked for under each of the
 * plan's resource paths, in a folder named after the whiteprint.
 * @module
 */
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { UserInputError } from '../../lib/errors.js';

/**
 * Finds a local file: an absolute path is used as it is; a relative one is looked for at
 * `<resourcePath>/<whiteprintName>/<file>` for each resource path in order.
 * A missing file is an error naming every place looked.
 */
export function resolveResource(file: string, whiteprintName: string, resourcePaths: readonly string[]): string {
  if (isAbsolute(file)) {
    if (isFile(file)) return file;
    throw new UserInputError(
      `the resource ${file} of whiteprint \`${whiteprintName}\` does not exist (absolute paths are used as given); create it or fix the path.`,
    );
  }
  const tried = resourcePaths.map((root) => resolve(join(root, whiteprintName, file)));
  const found = tried.find(isFile);
  if (found) return found;
  if (tried.length === 0) {
    throw new UserInputError(
      `cannot find the resource ${file} of whiteprint \`${whiteprintName}\`: the plan has no resource paths; pass \`resourcePaths\` to the SitePlan (files go in <path>/${whiteprintName}/${file}).`,
    );
  }
  throw new UserInputError(
    `cannot find the resource ${file} of whiteprint \`${whiteprintName}\`; looked at:\n${tried.map((t) => `  - ${t}`).join('\n')}\nPut the file in one of these places or add a resource path.`,
  );
}

function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}
