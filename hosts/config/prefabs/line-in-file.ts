/**
 * LineInFile: a line present in a file (appended when missing); removed again in `clean`.
 * @module
 */
import { lazySchema, z } from '../../../lib/zod.js';
import { UserInputError } from '../../../lib/errors.js';
import { quote } from '../../quote.js';
import { Prefab, type PrefabAction } from './prefab.js';

export const LineInFileConfig = lazySchema(() =>
  z.object({
    /** The file (`~/` is the login user's home). */
    path: z.string().min(1),
    /** The whole line, without a newline. */
    line: z.string().refine((l) => !l.includes('\n'), 'must be one line (no newline)'),
    /** Create the file when it is missing (default true). */
    create: z.boolean().default(true),
    /** Remove the line (every copy of it) in `clean` (default true). */
    removeOnClean: z.boolean().default(true),
  }),
);
export type LineInFileConfig = z.output<typeof LineInFileConfig>;

/** Makes sure a file contains a line. */
export class LineInFile extends Prefab<LineInFileConfig> {
  readonly name = 'line-in-file';
  override readonly schema = LineInFileConfig;

  protected async actions(mode: string): Promise<PrefabAction[]> {
    const path = this.remotePath(this.cfg.path);
    const p = quote(path);
    const l = quote(this.cfg.line);
    // grep: 0 found, 1 not found, 2 no file.
    const found = (await this.look(`[ -f ${p} ] || exit 2; grep -qxF -e ${l} -- ${p}`)).status;
    if (this.wantsPresent(mode)) {
      if (found === 0) return [];
      if (found === 2 && !this.cfg.create)
        throw new UserInputError(`cannot add a line to ${path}: the file does not exist; create it first or set create: true.`);
      return [
        {
          description: found === 2 ? `${path} does not exist` : `${path} lacks the line ${JSON.stringify(this.cfg.line)}`,
          run: async () => {
            // Keep the file's last line intact when it has no final newline.
            await this.run(
              `mkdir -p -- "$(dirname -- ${p})" && { if [ -s ${p} ] && [ -n "$(tail -c 1 -- ${p})" ]; then echo; fi; printf '%s\\n' ${l}; } >> ${p}`,
            );
            return [`added ${JSON.stringify(this.cfg.line)} to ${path}`];
          },
        },
      ];
    }
    if (mode === 'clean' && this.cfg.removeOnClean && found === 0) {
      return [
        {
          description: `${path} has the line ${JSON.stringify(this.cfg.line)}`,
          run: async () => {
            // Rewrite in place (cat >) so the file keeps its owner, mode and inode.
            await this.run(`t=$(mktemp) && { grep -vxF -e ${l} -- ${p} > "$t"; [ $? -le 1 ]; } && cat -- "$t" > ${p}; s=$?; rm -f -- "$t"; exit $s`);
            return [`removed ${JSON.stringify(this.cfg.line)} from ${path}`];
          },
        },
      ];
    }
    return [];
  }
}
