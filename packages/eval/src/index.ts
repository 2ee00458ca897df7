/**
 * @moreau/eval: model-agnostic evaluation — perplexity (LLM-Pruner protocol), zero-shot multiple
 * choice (lm-evaluation-harness protocol), generation, and the robustness of pruning plans under
 * weight perturbation. Evaluators take a `ScoringModel`; `scoringModelFromStages` runs any staged
 * model on core's executor (whole or layer-streamed) and `scoringModelFromLlama` a LLaMA. Each
 * export is described in the package README.
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
  type BaselineStat,
  type CalibrationDraw,
  type CalibrationSource,
  type CellDecimals,
  type CriterionSpec,
  checkSweep,
  comparePlans,
  DEFAULT_SEED_RUNS,
  type FamilyRun,
  formatRobustnessTable,
  formatSweepTable,
  isFamilyStat,
  isNotApplicable,
  isPairStat,
  keptUnits,
  type LossPerplexityOptions,
  lossPerplexity,
  type NotApplicableStat,
  type PairStat,
  type Perturbation,
  type PerturbationStat,
  pairName,
  parsePerturbation,
  perturbationName,
  prunedUnits,
  type RobustnessOptions,
  type RobustnessReport,
  type RobustnessStat,
  type RobustnessSweepOptions,
  type RobustnessSweepReport,
  robustness,
  robustnessSweep,
  type SeedFamilyStat,
  type SweepAxis,
  type SweepSetting,
  type SweepValues,
  statCells,
  statIou,
  sweepGrid,
  sweepLabel,
} from './internal/robustness.js';
export type { DecodingSession, ScoringModel, TokenScores } from './internal/scoring-model.js';
export {
  type LlamaScoringModel,
  type LlamaScoringOptions,
  type StagedScoringModel,
  type StagedScoringOptions,
  scoringModelFromLlama,
  scoringModelFromStages,
} from './internal/staged-scoring.js';
export {
  loadTask,
  loadTaskFile,
  type MultipleChoiceItem,
  type Request,
  STANDARD_TASKS,
  type ZeroShotTask,
} from './internal/tasks.js';
export {
  MAX_TEXT_BYTES,
  PPL_JOINS,
  type PplJoin,
  readFileBytes,
  readText,
  readTextFile,
  type TextSourceOptions,
} from './internal/text-source.js';
export {
  evaluateTask,
  type LoglikelihoodResult,
  type MultipleChoiceResult,
  type TaskResult,
  ZEROSHOT_PROTOCOLS,
  type ZeroShotOptions,
  type ZeroShotProtocol,
} from './internal/zeroshot.js';
