import { defineConfig, type Options } from 'tsup';

/**
 * The build every package shares: ESM + CJS + .d.ts from src/index.ts for Node 20. The
 * import.meta.url shim lets CJS builds locate files next to the module (ORT binaries, wasm
 * files, shipped models). Packages pass only what differs.
 */
export function packageBuild(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    shims: true,
    ...overrides,
  });
}
