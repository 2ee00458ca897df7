import { packageBuild } from '../../tsup.base';

export default packageBuild({
  // The conformance suite is a second entry, published as '@moreau/core/testing'.
  entry: ['src/index.ts', 'src/testing/index.ts'],
  // The suite imports core through its public name so that it shares the consumer's copy of core
  // (one primitive table, one error class identity), and vitest is the consumer's optional peer.
  external: ['@moreau/core', 'vitest'],
});
