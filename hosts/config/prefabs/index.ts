/**
 * The built-in prefabs.
 * @module
 */
export { Prefab } from './prefab.js';
export type { PrefabAction, PrefabMode } from './prefab.js';
export { Apt, AptConfig } from './apt.js';
export { Pip3, Pip3Config, distNameOf, normalizeDistName } from './pip.js';
export { Folder, FolderConfig, FileModeSchema } from './folder.js';
export { FileFromString, FileFromStringConfig, FileFromPath, FileFromPathConfig } from './files.js';
export { Symlink, SymlinkConfig } from './symlink.js';
export { LineInFile, LineInFileConfig } from './line-in-file.js';
export { FileExistsValidator, FileExistsValidatorConfig } from './validator.js';
