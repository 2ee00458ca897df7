import { defineConfig } from 'tsup';

// One build (no second config racing this one's `clean`): the library entry and the `moreau`
// binary (dist/moreau.js, ESM, from src/bin.ts). Commands load lazily, as chunks, so `--help`
// answers without loading the tensor engines.
export default defineConfig({
  entry: { index: 'src/index.ts', moreau: 'src/bin.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'src/index.ts' } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  shims: true,
});
