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
  OptionSpec,
  OptionValues,
  ParamInfo,
  Progress,
} from './criterion.js';
export { getCriterion, listCriteria, registerCriterion, resolveOptions } from './criterion.js';
export type { GroupKind, GroupMember, PrunableGroup } from './groups.js';
export { cutGroups, memberIndices, normalizeUnits, selectIndices } from './groups.js';
export type { PrunableModel } from './model.js';
export { countParams, cutModel } from './model.js';
export type { LayerDecision, LayerPlan, PruningPlan } from './plan.js';
export { applyPlan, parsePlan, planToJSON } from './plan.js';
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
export type { ChannelMode, Reduction } from './scoring.js';
export { REDUCTIONS } from './scoring.js';
