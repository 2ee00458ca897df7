/**
 * @moreau/eval: model-agnostic evaluation — perplexity (LLM-Pruner protocol), zero-shot multiple
 * choice (lm-evaluation-harness protocol), generation, and the robustness of pruning plans under
 * weight perturbation. Evaluators take a `ScoringModel`; `scoringModelFromLlama` adapts the LLaMA
 * graph of @moreau/models.
 */
export { lengthBucket } from './buckets.js';
export {
  type GenerateOptions,
  type GenerateResult,
  generate,
  sampleToken,
} from './generate.js';
export {
  type PerplexityOptions,
  type PerplexityResult,
  perplexity,
  perplexityWindows,
  type TextEncoder,
  textPerplexity,
} from './perplexity.js';
export {
  type CalibrationSource,
  type CriterionSpec,
  DEFAULT_PERTURBATIONS,
  formatRobustnessTable,
  type LossPerplexityOptions,
  lossPerplexity,
  type Perturbation,
  type PerturbationStat,
  parsePerturbation,
  perturbationName,
  perturbParams,
  prunedUnits,
  type RobustnessOptions,
  type RobustnessReport,
  robustness,
  type SeedFamilyStat,
  withParams,
} from './robustness.js';
export {
  checkWindows,
  type LlamaScoringModel,
  type LlamaScoringOptions,
  type ScoringModel,
  scoringModelFromLlama,
  type TokenScores,
} from './scoring-model.js';
export { averageRanks, jaccard, sampleSd, spearman } from './stats.js';
export {
  harnessContext,
  hellaswagPreprocess,
  loadTask,
  loadTaskFile,
  type MultipleChoiceItem,
  type Request,
  readFoundryJsonl,
  readHellaswagText,
  readOpenBookQaTsv,
  STANDARD_TASKS,
  taskFile,
  type ZeroShotTask,
} from './tasks.js';
export {
  detectFormat,
  joinDocuments,
  normalizeNewlines,
  readDocuments,
  readText,
  type TextFormat,
  type TextSourceOptions,
} from './text-source.js';
export {
  type EncodedRequest,
  encodeRequest,
  evaluateTask,
  type LoglikelihoodResult,
  type MultipleChoiceResult,
  multipleChoiceMetrics,
  type RequestScore,
  scoreRequests,
  type TaskResult,
  type ZeroShotOptions,
} from './zeroshot.js';
