import { packageBuild } from '../../tsup.base';

// The library entry and the `moreau` binary (dist/moreau.js, from src/bin.ts) in one build.
// Commands load lazily, as chunks, so `--help` answers without loading the tensor engines.
export default packageBuild({
  entry: { index: 'src/index.ts', moreau: 'src/bin.ts' },
  dts: { entry: { index: 'src/index.ts' } },
});
