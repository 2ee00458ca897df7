import { defineConfig } from 'tsup';

export default defineConfig({
  // The conformance suite is a second entry, published as '@moreau/core/testing'.
  entry: ['src/index.ts', 'src/testing/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // The suite imports core through its public name so that it shares the consumer's copy of core
  // (one primitive table, one error class identity), and vitest is the consumer's optional peer.
  external: ['@moreau/core', 'vitest'],
});
