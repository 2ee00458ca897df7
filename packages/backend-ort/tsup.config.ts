import { packageBuild } from '../../tsup.base';

// onnxruntime-node is an optional dependency (tsup bundles those unless told): it stays external,
// loaded from the installed package at run time.
export default packageBuild({ external: ['onnxruntime-node'] });
