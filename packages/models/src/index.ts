/**
 * @moreau/models: the LLaMA family for Moreau. Load a model (HF directory, llama2.c, GGUF or a
 * shipped name) with its tokenizer; use it as core's PrunableModel (`LlamaModel`) or call its
 * functions in core ops; read and write checkpoint files. README.md documents every export.
 */

// Checkpoint files.
export type { Checkpoint, CheckpointFormat, LoadCheckpointOptions } from './formats/checkpoint.js';
export { FormatError } from './formats/errors.js';
export { loadGguf, type SaveGgufOptions, saveGguf } from './formats/gguf/llama.js';
export { loadHfDirectory, type SaveHfOptions, type SaveProgress, saveHfDirectory } from './formats/hf-dir.js';
export { loadLlama2c, saveLlama2c } from './formats/llama2c.js';
export { loadCheckpoint } from './formats/load.js';
export {
  type LoadedLoraAdapter,
  loadLoraAdapter,
  peftAdapterConfig,
  type SaveLoraAdapterOptions,
  saveLoraAdapter,
} from './formats/peft.js';
export { readSafetensors, writeSafetensors } from './formats/safetensors.js';
export type { LazyOption } from './formats/stored.js';
// Loading a model with its tokenizer; writing a random one.
export { type InitModelOptions, type InitModelResult, initModel } from './init.js';
export {
  type CausalLmOutput,
  type LayerCache,
  type LlamaOnnxExport,
  type LlamaOnnxOptions,
  llamaCausalLm,
  llamaOnnxExport,
} from './llama/causal-lm.js';
// The model: its description, core's PrunableModel, its functions in core ops, presets.
export {
  canonicalLayerSizes,
  type LayerDims,
  type Llama3RopeScaling,
  type LlamaConfig,
  layerDims,
} from './llama/config.js';
export { type LlamaMacs, llamaMacs } from './llama/macs.js';
export {
  type LlamaParams,
  llamaLogits,
  llamaLoss,
  llamaShiftedLogits,
  llamaTargetNll,
  llamaTokenNll,
} from './llama/model.js';
export {
  LLAMA_PRESET_NAMES,
  type LlamaPresetName,
  llamaPreset,
  paramCount,
  type RandomInitOptions,
  randomInit,
} from './llama/presets.js';
export { LlamaModel } from './llama/prunable.js';
export { type LoadedModel, type LoadModelOptions, loadModel } from './load-model.js';

// Tokenizers.
export { Llama2cTokenizer } from './tokenizers/llama2c.js';
export { type LoadTokenizerOptions, loadTokenizer } from './tokenizers/load.js';
export { SentencePieceTokenizer } from './tokenizers/sentencepiece.js';
export type { EncodeOptions, Tokenizer, TokenizerKind } from './tokenizers/types.js';
