/**
 * Folder: a directory with an owner, group and mode; removed in `clean`.
 * @module
 */
import { lazySchema, z } from '../../../lib/zod.js';
import { UserInputError } from '../../../lib/errors.js';
import { quote } from '../../quote.js';
import { ensureAttributes, remoteState } from '../remote.js';
import { Prefab, type PrefabAction } from './prefab.js';

/** A file mode: a number (`0o755`) or octal digits (`'0755'`). */
export const FileModeSchema = lazySchema(() =>
  z.union([z.number().int().min(0).max(0o7777), z.string().regex(/^[0-7]{1,5}$/, "use octal digits, e.g. '0644'")]),
);

export const FolderConfig = lazySchema(() =>
  z.object({
    /** Remote path (`~/` is the login user's home). */
    path: z.string().min(1),
    owner: z.string().optional(),
    group: z.string().optional(),
    mode: FileModeSchema.optional(),
    /** Remove the folder and everything in it in `clean` (default true). */
    removeOnClean: z.boolean().default(true),
  }),
);
export type FolderConfig = z.output<typeof FolderConfig>;

/** Makes sure a folder exists with the given owner, group and mode; `clean` removes it. */
export class Folder extends Prefab<FolderConfig> {
  readonly name = 'folder';
  override readonly schema = FolderConfig;

  protected async actions(mode: string): Promise<PrefabAction[]> {
    const path = this.remotePath(this.cfg.path);
    const session = this.host.session;
    const state = await remoteState(session, path);
    const attrs = { owner: this.cfg.owner, group: this.cfg.group, mode: this.cfg.mode };
    if (this.wantsPresent(mode)) {
      if (state.type === 'none') {
        return [
          {
            description: `folder ${path} does not exist`,
            run: async () => {
              await this.run(`mkdir -p -- ${quote(path)}`);
              return [`created folder ${path}`, ...(await ensureAttributes(session, path, await remoteState(session, path), attrs))];
            },
          },
        ];
      }
      if (state.type !== 'dir') throw new UserInputError(`${path} exists but is not a folder (it is a ${state.type}); remove it or choose another path.`);
      const differences = await ensureAttributes(session, path, state, attrs, true);
      return differences.length ? [{ description: differences.join('; '), run: () => ensureAttributes(session, path, state, attrs) }] : [];
    }
    if (mode === 'clean' && this.cfg.removeOnClean && state.type === 'dir') {
      const normalized = path.replace(/\/+$/, '') || '/';
      if (normalized === '/' || normalized === this.target.home.replace(/\/+$/, '')) {
        throw new UserInputError(`refusing to remove ${path} in clean mode: it is the root or home folder; set removeOnClean: false.`);
      }
      return [{ description: `folder ${path} exists`, run: async () => void (await this.run(`rm -rf -- ${quote(path)}`)) }];
    }
    return [];
  }
}
