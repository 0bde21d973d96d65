/**
 * FileExistsValidator: checks in `validate` that a file exists; changes nothing.
 * @module
 */
import { lazySchema, z } from '../../../lib/zod.js';
import { quote } from '../../quote.js';
import { Whiteprint } from '../whiteprint.js';

export const FileExistsValidatorConfig = lazySchema(() =>
  z.object({
    /** The remote path that must exist (`~/` is the login user's home). */
    path: z.string().min(1),
    /** Also require a regular file (not a folder). */
    regularFile: z.boolean().default(false),
  }),
);
export type FileExistsValidatorConfig = z.output<typeof FileExistsValidatorConfig>;

/** Only validates: drift when the path is missing (in every mode but `clean`). */
export class FileExistsValidator extends Whiteprint<FileExistsValidatorConfig> {
  readonly name = 'file-exists';
  override readonly schema = FileExistsValidatorConfig;
  static readonly usesParentResources = true;

  override async validate(mode: string): Promise<void> {
    if (mode === 'clean') return;
    const path = this.remotePath(this.cfg.path);
    const r = await this.exec(`test ${this.cfg.regularFile ? '-f' : '-e'} ${quote(path)}`, { errorOk: true, changed: false });
    if (r.status !== 0) this.drift(`${path} does not exist${this.cfg.regularFile ? ' as a regular file' : ''}`);
  }
}
