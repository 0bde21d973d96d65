/**
 * Debian's chromium driven by playwright-core (never a downloaded browser). Tests skip saying why
 * when it is missing, except under CI=true, where that fails: run scripts/setup-test-env.sh.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Why browser tests cannot run here (false when they can). */
export function chromiumMissing(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing in CI: scripts/setup-test-env.sh installs Debian's chromium.`);
  return `${CHROMIUM} is missing (apt-get install chromium, or run scripts/setup-test-env.sh as root)`;
}

/** Headless chromium with background networking off. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
