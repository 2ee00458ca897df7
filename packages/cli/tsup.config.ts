import { packageBuild } from '../../tsup.base';

// The library entry, the `moreau` binary (dist/moreau.js, from src/bin.ts: the supervisor) and its
// worker process (dist/worker.js) in one build. Commands load lazily, as chunks, so `--help`
// answers without loading the tensor engines.
export default packageBuild({
  entry: { index: 'src/index.ts', moreau: 'src/bin.ts', worker: 'src/worker.ts' },
  dts: { entry: { index: 'src/index.ts' } },
});
