/**
 * FileFromString and FileFromPath: a remote file with given content (optionally a template),
 * written only when its checksum differs; removed in `clean`.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { lazySchema, z } from '../../../lib/zod.js';
import { quote } from '../../quote.js';
import { ensureFile, remoteState } from '../remote.js';
import { FileModeSchema } from './folder.js';
import { Prefab, type PrefabAction } from './prefab.js';

const Common = lazySchema(() => ({
  /** Remote path (`~/` is the login user's home). */
  path: z.string().min(1),
  /** Render the content as a template with the config of the whiteprint and `target` facts. */
  template: z.boolean().default(false),
  /** Extra template variables. */
  vars: z.record(z.string(), z.unknown()).default({}),
  owner: z.string().optional(),
  group: z.string().optional(),
  mode: FileModeSchema.optional(),
  /** Remove the file in `clean` (default true). */
  removeOnClean: z.boolean().default(true),
}));

export const FileFromStringConfig = lazySchema(() => z.object({ ...Common, content: z.string() }));
export type FileFromStringConfig = z.output<typeof FileFromStringConfig>;

export const FileFromPathConfig = lazySchema(() =>
  z.object({
    ...Common,
    /** Local file: absolute, or relative to `<resource path>/<whiteprint name>/`. */
    source: z.string().min(1),
  }),
);
export type FileFromPathConfig = z.output<typeof FileFromPathConfig>;

abstract class FilePrefab<C extends FileFromStringConfig | FileFromPathConfig> extends Prefab<C> {
  protected abstract content(): Promise<{ text: Buffer; name: string }>;

  protected async actions(mode: string): Promise<PrefabAction[]> {
    const path = this.remotePath(this.cfg.path);
    const session = this.host.session;
    if (this.wantsPresent(mode)) {
      const { text, name } = await this.content();
      const data = this.cfg.template ? Buffer.from(this.render(text.toString('utf8'), this.cfg.vars, name)) : text;
      const attrs = { owner: this.cfg.owner, group: this.cfg.group, mode: this.cfg.mode };
      const differences = await ensureFile(session, path, data, attrs, { dryRun: true });
      if (!differences.length) return [];
      return [{ description: differences.join('; '), run: () => ensureFile(session, path, data, attrs) }];
    }
    if (mode === 'clean' && this.cfg.removeOnClean) {
      const state = await remoteState(session, path);
      if (state.type === 'file' || state.type === 'link')
        return [{ description: `file ${path} exists`, run: async () => void (await this.run(`rm -f -- ${quote(path)}`)) }];
    }
    return [];
  }
}

/** A remote file with the given text (a template when `template: true`). */
export class FileFromString extends FilePrefab<FileFromStringConfig> {
  readonly name = 'file-from-string';
  override readonly schema = FileFromStringConfig;
  protected async content(): Promise<{ text: Buffer; name: string }> {
    return { text: Buffer.from(this.cfg.content), name: `the content for ${this.cfg.path}` };
  }
}

/** A remote file copied from a local resource file (a template when `template: true`). */
export class FileFromPath extends FilePrefab<FileFromPathConfig> {
  readonly name = 'file-from-path';
  override readonly schema = FileFromPathConfig;
  protected async content(): Promise<{ text: Buffer; name: string }> {
    const file = this.resource(this.cfg.source);
    return { text: await readFile(file), name: file };
  }
}
