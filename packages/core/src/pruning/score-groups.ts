/**
 * Unit scores of the block, channel and layer scopes: the salience a criterion hands over is
 * folded into per-group channel scores one member parameter at a time (then reduced across
 * members and summed per unit), so no per-element salience of the whole model is ever held.
 */
import { InputError } from '../errors.js';
import { runCriterion, type ScoreRun } from './criterion-run.js';
import type { PrunableGroup } from './groups.js';
import {
  type ChannelMode,
  channelScores,
  foldSubUnits,
  type Reduction,
  reduceMembers,
  sumChannelsIntoUnits,
} from './scoring.js';

/** Folds element salience into unit scores, one member parameter at a time. */
class SalienceSink {
  /** Per group, per member index: the member's folded channel scores once it arrived. */
  private readonly perMember: (Float64Array | undefined)[][];
  private readonly where = new Map<string, { group: number; member: number }[]>();

  constructor(
    private readonly groups: readonly PrunableGroup[],
    private readonly shapes: ReadonlyMap<string, readonly number[]>,
    private readonly mode: ChannelMode,
    private readonly reduction: Reduction,
    private readonly criterion: string,
  ) {
    this.perMember = groups.map((g) => g.members.map(() => undefined));
    groups.forEach((g, gi) => {
      g.members.forEach((m, mi) => {
        const list = this.where.get(m.param) ?? [];
        list.push({ group: gi, member: mi });
        this.where.set(m.param, list);
      });
    });
  }

  add(name: string, values: Float32Array | Float64Array): void {
    const places = this.where.get(name);
    if (!places) {
      throw new InputError(
        `criterion '${this.criterion}' handed over salience for '${name}', which belongs to no group being scored`,
      );
    }
    const shape = this.shapes.get(name)!;
    const size = shape.reduce((p, d) => p * d, 1);
    if (values.length !== size) {
      throw new InputError(
        `criterion '${this.criterion}' returned ${values.length} salience values for '${name}', which has ${size} elements`,
      );
    }
    for (const { group, member } of places) {
      const g = this.groups[group]!;
      const m = g.members[member]!;
      this.perMember[group]![member] = foldSubUnits(channelScores(values, shape, m.axis, this.mode), g, m);
    }
  }

  /** Unit scores per group; every member must have arrived. */
  finish(): Float64Array[] {
    return this.groups.map((g, gi) => {
      const got = this.perMember[gi]!;
      const missing = g.members.find((_, mi) => !got[mi]);
      if (missing) {
        throw new InputError(
          `criterion '${this.criterion}' returned no salience for '${missing.param}' (group ${g.id})`,
        );
      }
      return sumChannelsIntoUnits(reduceMembers(got as Float64Array[], this.reduction), g.units, g.unitSize);
    });
  }
}

/** Scores one model state with the criterion: unit scores per group of `run.groups`. */
export async function scoreGroups(run: ScoreRun, reduction: Reduction): Promise<Float64Array[]> {
  const { model, groups, criterion } = run;
  const shapes = new Map<string, readonly number[]>();
  for (const g of groups)
    for (const m of g.members) shapes.set(m.param, model.params.get(m.param)?.shape ?? []);
  const sink = new SalienceSink(
    groups,
    shapes,
    criterion.channelMode(run.options),
    reduction,
    criterion.name,
  );
  const result = await runCriterion(run, (name, values) => sink.add(name, values));
  if (result.unitScores) {
    if (
      result.unitScores.length !== groups.length ||
      result.unitScores.some((s, i) => s.length !== groups[i]!.units)
    ) {
      throw new InputError(
        `criterion '${criterion.name}' returned unit scores that do not match the model's groups`,
      );
    }
    return [...result.unitScores];
  }
  return sink.finish();
}
