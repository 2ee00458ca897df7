export {
  type CommitEntry,
  checkDirOutput,
  checkFileOutput,
  type DirOutputOptions,
  describeFsError,
  type FileContent,
  type FileOutputOptions,
  OutputError,
  type OutputJournal,
  OutputTransaction,
  pendingTemporaries,
  recoverOutputs,
  setOutputJournal,
  writeDirAtomic,
  writeFileAtomic,
} from './atomic-write.js';
export type {
  Backend,
  BackendFactory,
  CompileOptions,
  DeviceTensor,
  Executable,
  MemoryReport,
  TensorInput,
} from './backend.js';
export { getBackend, isDeviceTensor, listBackends, registerBackend } from './backend.js';
export { type CounterKey, counterKey, fillCounterNormals, perturbInto } from './counter-rng.js';
export type { DType, FloatDType, HostData, HostTensor } from './dtype.js';
export {
  allocate,
  bfloat16ToFloat32,
  bytesPerElement,
  castHost,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToBfloat16Bits,
  float32ToFloat16,
  float32ToFloat16Bits,
  hostTensorsEqual,
  isFloat,
  scalar,
  sizeOf,
  tensor,
  toFloat32Data,
  zeros,
} from './dtype.js';
export {
  AbortError,
  BackendUnavailableError,
  InputError,
  MemoryLimitError,
  MoreauError,
  ShapeError,
  throwIfAborted,
  UnsupportedPrimitiveError,
} from './errors.js';
export type { Graph, Node, NodeOf, Primitive, PrimitiveAttrs, ValueInfo } from './ir.js';
export { attrsOf, graphHash, graphToJSON, graphToText, inputInfos, outputInfos } from './ir.js';
export { isLazyTensor, lazyTensor, tensorBytes } from './lazy.js';
export {
  checkLoraConfig,
  DEFAULT_LORA_TARGETS,
  dropoutMask,
  findLoraTargets,
  initLora,
  isLoraParam,
  type LoraAdapters,
  type LoraConfig,
  type LoraTarget,
  loraDropoutInputs,
  loraDropoutKey,
  loraLinear,
  loraNames,
  loraScale,
  mergeLora,
  mergeLoraWeight,
  stageLinear,
  unmergeLora,
} from './lora.js';
export * as ops from './ops.js';
export type {
  AdamWOptions,
  AdamWState,
  ParamArrays,
  WarmupCosineOptions,
  WarmupLinearOptions,
} from './optim.js';
export { AdamW, clipGradNorm, warmupCosine, warmupLinear } from './optim.js';
export {
  COMPUTE_DTYPES,
  type ComputeDtype,
  type ComputeMode,
  checkComputeDtype,
  computeMode,
  emulatePrecision,
  PRECISION_PRESERVING,
  type Precision,
  precisionOf,
  roundHost,
  roundHostArray,
  roundTo,
} from './precision.js';
export { PRIMITIVES } from './primitive-list.js';
export * from './pruning/index.js';
export { evaluateReference, ReferenceBackend, type ReferenceOptions } from './reference-backend.js';
export { Rng } from './rng.js';
export { broadcastShapes, sameShape } from './shapes.js';
export { Decoder } from './stream/decoder.js';
export {
  type CallCost,
  callBytes,
  estimateForward,
  type ForwardEstimate,
  peakBytes,
  streamedForwardBytes,
  wholeForwardBytes,
} from './stream/estimate.js';
export {
  type ExecMode,
  type ExecutorOptions,
  estimateWholeBytes,
  type ForwardBatch,
  type GradientPass,
  type HeadOutputs,
  type LossOptions,
  ModelExecutor,
  type StageInputs,
  type WeightSource,
} from './stream/executor.js';
export { capacityFor } from './stream/kv-cache.js';
export { availableMemory, gib } from './stream/memory.js';
export { ParamState, type ParamStateOptions } from './stream/param-state.js';
export {
  allStages,
  type CacheSpec,
  type DecodeStep,
  type IncrementalDecoding,
  type Stage,
  type StagedModel,
  type StageParams,
} from './stream/staged-model.js';
export { Tensor } from './tensor.js';
export type { JitOptions, Jitted, TensorSpec, Traced, ValueAndGradOptions } from './transforms.js';
export { jit, trace, valueAndGrad } from './transforms.js';
