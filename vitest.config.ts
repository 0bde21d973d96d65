import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Prints the reliability suite's figures at the end of the run.
    globalSetup: ['test/reliability/global-setup.ts'],
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
