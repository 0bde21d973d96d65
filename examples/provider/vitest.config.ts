// The example provider's suite: `npx vitest run --config examples/provider/vitest.config.ts`.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// In a provider's own repository `hostbroker` is installed; here it is this checkout's source.
const lib = (path: string) => fileURLToPath(new URL(`../../lib/${path}`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^hostbroker\/testing$/, replacement: lib('testing/index.ts') },
      { find: /^hostbroker$/, replacement: lib('index.ts') },
    ],
  },
  test: {
    include: ['examples/provider/*.example.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
