export type { CalibrationOptions, CalibrationSet, PatchOptions } from './calibration.js';
export {
  calibrationToJSON,
  parseCalibration,
  sampleCalibration,
  sampleCalibrationPatches,
  windowsAt,
} from './calibration.js';
export type {
  Criterion,
  CriterionContext,
  CriterionDiagnostics,
  CriterionResult,
  DiagnosticValue,
  GradientRequest,
  GradientResult,
  LayerActivations,
  OptionSpec,
  OptionValues,
  ParamInfo,
  Progress,
} from './criterion.js';
export { getCriterion, listCriteria, registerCriterion, resolveOptions } from './criterion.js';
export type { GroupCut, GroupKind, GroupMember, GroupRef, PrunableGroup } from './groups.js';
export { cutGroups, groupRef, memberIndices, normalizeUnits, selectIndices } from './groups.js';
export type { PrunableModel } from './model.js';
export { countParams, cutModel } from './model.js';
export type {
  GroupDecision,
  JsonValue,
  MatrixMask,
  PlanCriterion,
  PlanSettings,
  PruningPlan,
} from './plan.js';
export { type ApplyPlanOptions, applyPlan, parsePlan, planToJSON, planToJSONChunks } from './plan.js';
export { readPlanFile, writePlanFile } from './plan-file.js';
export type {
  CalibrationSampling,
  PresetCalibration,
  PresetSource,
  PruningPreset,
  ResolvedPreset,
} from './presets.js';
export { getPreset, listPresets, PRUNING_PRESETS, referenceLayerRange, resolvePreset } from './presets.js';
export type { PlanOptions, PruneResult } from './prune.js';
export { prune } from './prune.js';
export type { PruneScope, Ranking, ScopeKind } from './scope.js';
export { parseRanking, parseScope, RANKINGS, SCOPE_KINDS } from './scope.js';
export type { ChannelMode, Reduction } from './scoring.js';
export { REDUCTIONS } from './scoring.js';
export type { MatrixSparsity, SparsityReport } from './sparsity.js';
export { countNonZero, NM_WIDTHS, sparsityReport } from './sparsity.js';
