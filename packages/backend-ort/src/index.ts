/**
 * @moreau/backend-ort: Moreau IR graphs compiled to ONNX and run on onnxruntime-node.
 *
 * Importing this package registers the backend as 'ort' (priority 100); onnxruntime-node itself
 * is loaded only when the backend is first created.
 */

import { createOrtBackend } from './internal/backend.js';
import { registerBackend } from './internal/core.js';

export type {
  OrtBackend,
  OrtBackendOptions,
  OrtExecutionProvider,
  OrtGraphOptimizationLevel,
} from './internal/backend.js';
export { createOrtBackend, ortAvailableProviders } from './internal/backend.js';
export type {
  ExportedDim,
  ExportOnnxOptions,
  ExportOnnxResult,
  SymbolicGraphSpec,
} from './internal/export.js';
export { exportOnnx, exportOnnxSymbolic } from './internal/export.js';

const factory = () => createOrtBackend();
registerBackend('ort', factory, 100);
