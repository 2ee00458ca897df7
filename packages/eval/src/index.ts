/**
 * @moreau/eval: model-agnostic evaluation — perplexity (LLM-Pruner protocol), zero-shot multiple
 * choice (lm-evaluation-harness protocol), generation, and the robustness of pruning plans under
 * weight perturbation. Evaluators take a `ScoringModel`; `scoringModelFromLlama` adapts the LLaMA
 * graph of @moreau/models. Each export is described in the package README.
 */
export { type GenerateOptions, type GenerateResult, generate } from './internal/generate.js';
export { forwardLatency, type LatencyOptions, type LatencyResult } from './internal/latency.js';
export { PAPER_METRICS, paperAverage, paperScore } from './internal/paper.js';
export {
  type PerplexityOptions,
  type PerplexityResult,
  perplexity,
  perplexityWindows,
  type TextEncoder,
  textPerplexity,
} from './internal/perplexity.js';
export {
  type CalibrationSource,
  type CriterionSpec,
  formatRobustnessTable,
  type LossPerplexityOptions,
  lossPerplexity,
  type Perturbation,
  type PerturbationStat,
  parsePerturbation,
  perturbationName,
  type RobustnessOptions,
  type RobustnessReport,
  robustness,
  type SeedFamilyStat,
} from './internal/robustness.js';
export {
  type LlamaScoringModel,
  type LlamaScoringOptions,
  type ScoringModel,
  scoringModelFromLlama,
  type TokenScores,
} from './internal/scoring-model.js';
export {
  loadTask,
  loadTaskFile,
  type MultipleChoiceItem,
  type Request,
  STANDARD_TASKS,
  type ZeroShotTask,
} from './internal/tasks.js';
export { PPL_JOINS, type PplJoin, readText, type TextSourceOptions } from './internal/text-source.js';
export {
  evaluateTask,
  type LoglikelihoodResult,
  type MultipleChoiceResult,
  type TaskResult,
  ZEROSHOT_PROTOCOLS,
  type ZeroShotOptions,
  type ZeroShotProtocol,
} from './internal/zeroshot.js';
