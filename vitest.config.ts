import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string, file = 'index.ts') =>
  fileURLToPath(new URL(`./packages/${pkg}/src/${file}`, import.meta.url));

// Tests import sibling packages from source, so a change is tested without a rebuild.
// The CLI end-to-end tests run the built binary instead (the test script builds first).
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@moreau\/core\/testing$/, replacement: src('core', 'testing/index.ts') },
      { find: /^@moreau\/core$/, replacement: src('core') },
      { find: /^@moreau\/backend-ort$/, replacement: src('backend-ort') },
      { find: /^@moreau\/backend-tfjs$/, replacement: src('backend-tfjs') },
      { find: /^@moreau\/criteria$/, replacement: src('criteria') },
      { find: /^@moreau\/models$/, replacement: src('models') },
      { find: /^@moreau\/eval$/, replacement: src('eval') },
      { find: /^@moreau\/tune$/, replacement: src('tune') },
      // The tests' shared set-up: a root-level module, not a package (CONTRIBUTING.md).
      {
        find: /^@moreau\/test-utils$/,
        replacement: fileURLToPath(new URL('./test-utils/index.ts', import.meta.url)),
      },
    ],
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'examples/*/src/**/*.test.ts', 'tools/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
