/**
 * @moreau/tune: LoRA recovery of (pruned) models, as LLM-Pruner's post_training.py does it —
 * Alpaca-format instruction data with a prompt template, or plain text corpora; AdamW with the
 * Hugging Face Trainer's schedule, gradient accumulation and clipping; checkpoints that resume
 * exactly. The adapters themselves are core's LoRA transform (`withLora` on the model) and are
 * written as PEFT folders by @moreau/models. README.md documents every export.
 */
export {
  type Checkpoint,
  checkpointPath,
  type EvalRecord,
  loadCheckpoint,
  type StepRecord,
  saveCheckpoint,
  type TrainerState,
} from './internal/checkpoint.js';
export {
  type DataKind,
  type DataTokenizer,
  detectDataKind,
  type Example,
  type InstructionRecord,
  instructionExample,
  loadTuningData,
  type MicroBatch,
  microBatch,
  readInstructions,
  splitExamples,
  type TuningData,
  type TuningDataOptions,
  textExamples,
} from './internal/data.js';
export {
  ALPACA_TEMPLATE,
  formatPrompt,
  loadTemplate,
  type PromptTemplate,
  parseTemplate,
} from './internal/template.js';
export {
  stepsOf,
  type TuneEvent,
  type TuneOptions,
  type TuneProgress,
  type TuneResult,
  tuneLora,
} from './internal/train.js';
