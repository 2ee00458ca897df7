// Readers and writers of model files (formats/) and tokenizers (tokenizers/).
export {
  type Checkpoint,
  type CheckpointFormat,
  type LoadCheckpointOptions,
  validateCheckpointTensors,
} from './formats/checkpoint.js';
export { FormatError } from './formats/errors.js';
export {
  ggufLlamaConfig,
  ggufToHfName,
  hfToGgufName,
  loadGguf,
  type SaveGgufOptions,
  saveGguf,
} from './formats/gguf/llama.js';
export {
  GGML_TYPES,
  type GgufFile,
  type GgufTensorInfo,
  type GgufValue,
  openGguf,
  readGgufInfo,
} from './formats/gguf/read.js';
export { type GgufTokenizerData, ggufTokenizerData } from './formats/gguf/tokenizer.js';
export { type GgufWriteTensor, type GgufWriteValue, writeGguf } from './formats/gguf/write.js';
export {
  type HfConfigJsonOptions,
  hfConfigToJson,
  hfFieldName,
  parseHfConfig,
  readHfConfig,
} from './formats/hf-config.js';
export { loadHfDirectory, type SaveHfOptions, saveHfDirectory } from './formats/hf-dir.js';
export { type Llama2cHeader, loadLlama2c, readLlama2cHeader, saveLlama2c } from './formats/llama2c.js';
export { loadCheckpoint } from './formats/load.js';
export {
  openSafetensors,
  readSafetensors,
  readShardedSafetensors,
  type SafetensorsContents,
  type SafetensorsDType,
  type SafetensorsFile,
  type SafetensorsReadOptions,
  type SafetensorsTensorInfo,
  type SafetensorsWriteOptions,
  type ShardedWriteOptions,
  writeSafetensors,
  writeSafetensorsDir,
} from './formats/safetensors.js';
// The LLaMA model (llama/): its description, model functions in core ops, prunable groups, presets.
export {
  expectedTensorShapes,
  isPruned,
  type LayerDims,
  type Llama3RopeScaling,
  type LlamaConfig,
  layerDims,
  validateLlamaConfig,
} from './llama/config.js';
export {
  type LayerSizes,
  type LlamaGroupsOptions,
  llamaAttentionGroup,
  llamaConfigAfterCut,
  llamaGroups,
  llamaHiddenGroup,
  llamaLayerGroup,
  llamaMlpGroup,
  type MemberRole,
  pruneConfig,
} from './llama/groups.js';
export {
  type LlamaParams,
  llamaLogits,
  llamaLoss,
  llamaMaskedLoss,
  llamaShiftedLogits,
  llamaTargetNll,
  llamaTokenNll,
} from './llama/model.js';
export {
  LLAMA_PRESET_NAMES,
  LLAMA_PRESETS,
  type LlamaPresetName,
  llamaPreset,
  paramCount,
  type RandomInitOptions,
  randomInit,
} from './llama/presets.js';
export { LlamaModel } from './llama/prunable.js';
export { permuteRopeRows, type RopeTables, ropeInvFreq, ropeTables } from './llama/rope.js';
export {
  type LoadedModel,
  type LoadModelOptions,
  loadModel,
  SHIPPED_MODELS,
  shippedModelDir,
} from './load-model.js';
export { HfTokenizer } from './tokenizers/hf.js';
export { Llama2cTokenizer } from './tokenizers/llama2c.js';
export { type LoadTokenizerOptions, loadTokenizer } from './tokenizers/load.js';
export { PieceType, SentencePieceTokenizer, type SentencePieceVocab } from './tokenizers/sentencepiece.js';
export type { EncodeOptions, Tokenizer, TokenizerKind } from './tokenizers/types.js';
