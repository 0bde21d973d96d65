/**
 * Symlink: a symbolic link pointing at a target; removed in `clean`.
 * @module
 */
import { lazySchema, z } from '../../../lib/zod.js';
import { UserInputError } from '../../../lib/errors.js';
import { quote } from '../../quote.js';
import { remoteState } from '../remote.js';
import { Prefab, type PrefabAction } from './prefab.js';

export const SymlinkConfig = lazySchema(() =>
  z.object({
    /** Where the link is (`~/` is the login user's home). */
    path: z.string().min(1),
    /** What it points at (written into the link as given, after `~/` expansion). */
    target: z.string().min(1),
    /** Replace a regular file (not a folder) that is in the way. */
    force: z.boolean().default(false),
    /** Remove the link in `clean` (default true). */
    removeOnClean: z.boolean().default(true),
  }),
);
export type SymlinkConfig = z.output<typeof SymlinkConfig>;

/** Makes sure `path` is a symlink to `target`. */
export class Symlink extends Prefab<SymlinkConfig> {
  readonly name = 'symlink';
  override readonly schema = SymlinkConfig;

  protected async actions(mode: string): Promise<PrefabAction[]> {
    const path = this.remotePath(this.cfg.path);
    const target = this.remotePath(this.cfg.target);
    const state = await remoteState(this.host.session, path);
    if (this.wantsPresent(mode)) {
      if (state.type === 'link' && state.linkTarget === target) return [];
      if (state.type === 'dir' || state.type === 'other' || (state.type === 'file' && !this.cfg.force)) {
        throw new UserInputError(
          `cannot make the symlink ${path}: a ${state.type === 'dir' ? 'folder' : 'file'} is in the way; remove it${state.type === 'file' ? ' or set force: true' : ''}.`,
        );
      }
      const description = state.type === 'link' ? `${path} points at ${state.linkTarget}, not ${target}` : `symlink ${path} → ${target} does not exist`;
      return [
        {
          description,
          run: async () => {
            await this.run(`mkdir -p -- "$(dirname -- ${quote(path)})" && ln -sfn -- ${quote(target)} ${quote(path)}`);
            return [`linked ${path} → ${target}`];
          },
        },
      ];
    }
    if (mode === 'clean' && this.cfg.removeOnClean && state.type === 'link') {
      return [{ description: `symlink ${path} exists`, run: async () => void (await this.run(`rm -f -- ${quote(path)}`)) }];
    }
    return [];
  }
}
