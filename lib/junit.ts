/**
 * Reads a JUnit XML report to decide whether tests passed (checkin's `ifTestsPassed`).
 * @module
 */
import { readFile } from 'node:fs/promises';
import { UserInputError } from './errors.js';

/** Whether a JUnit report has no failures and no errors, with a one-line summary. */
export async function junitPassed(path: string): Promise<{ passed: boolean; summary: string }> {
  let xml: string;
  try {
    xml = await readFile(path, 'utf8');
  } catch (error) {
    throw new UserInputError(`cannot read the JUnit report ${path}: ${(error as Error).message}; no host was checked in.`, { cause: error });
  }
  if (!/<testsuites?[\s>]/.test(xml)) throw new UserInputError(`${path} is not a JUnit XML report (no <testsuite> element); no host was checked in.`);
  let tests = 0;
  let failures = 0;
  let errors = 0;
  // Count from the suites' attributes, and fall back to the elements when attributes are missing.
  for (const m of xml.matchAll(/<testsuite\b([^>]*)>/g)) {
    const attrs = m[1] ?? '';
    tests += num(attrs, 'tests');
    failures += num(attrs, 'failures');
    errors += num(attrs, 'errors');
  }
  failures = Math.max(failures, (xml.match(/<failure\b/g) ?? []).length);
  errors = Math.max(errors, (xml.match(/<error\b/g) ?? []).length);
  tests = Math.max(tests, (xml.match(/<testcase\b/g) ?? []).length);
  return { passed: failures === 0 && errors === 0, summary: `${tests} tests, ${failures} failures, ${errors} errors in ${path}` };
}

function num(attrs: string, name: string): number {
  const m = new RegExp(`\\b${name}="(\\d+)"`).exec(attrs);
  return m ? Number(m[1]) : 0;
}
