/**
 * YAML for files people write (settings, args files, metadata): a warning (an unknown `!tag`,
 * say) is an error, instead of a process warning and a value that silently became a string.
 * @module
 */
import { lazyRequire } from './lazy-require.js';

const yaml = lazyRequire<typeof import('yaml')>('yaml');

/** Parses YAML (and so JSON); throws an Error naming the first problem. */
export function parseYamlStrict(text: string): unknown {
  const doc = yaml().parseDocument(text, { logLevel: 'silent' });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) throw new Error(problem.message);
  return doc.toJS();
}
