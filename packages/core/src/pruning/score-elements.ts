/**
 * Masks of the unstructured and N:M scopes: each matrix's element salience becomes its bitset the
 * moment the criterion hands it over (only the bitsets are kept, plus, when asked, the float32
 * salience the plan stores to recompute them).
 */
import { InputError } from '../errors.js';
import { runCriterion, type ScoreRun } from './criterion-run.js';
import { type ElementRule, elementMask } from './masks.js';
import type { MatrixMask } from './plan.js';

/** Scores one model state and masks every matrix that is a member of `run.groups`. */
export async function scoreElements(
  run: ScoreRun,
  rule: ElementRule,
  keepSalience: boolean,
): Promise<MatrixMask[]> {
  const { model, criterion } = run;
  const matrices = new Set(run.groups.flatMap((g) => g.members.map((m) => m.param)));
  const masks = new Map<string, MatrixMask>();
  const add = (name: string, values: Float32Array | Float64Array) => {
    if (!matrices.has(name)) {
      throw new InputError(
        `criterion '${criterion.name}' handed over salience for '${name}', which is not a matrix being pruned`,
      );
    }
    // Masks are computed from float32 salience, exactly what a plan stores, so a stored plan
    // recomputes the same mask.
    const salience = values instanceof Float32Array ? values : Float32Array.from(values);
    const shape = model.params.get(name)!.shape;
    masks.set(name, {
      param: name,
      shape,
      ...(keepSalience
        ? { salience: salience === values ? salience.slice() : salience }
        : { zeroed: elementMask(salience, shape, rule, name) }),
    });
  };
  const result = await runCriterion(run, add);
  if (result.unitScores) {
    throw new InputError(
      `criterion '${criterion.name}' returned unit scores; scope ${rule.kind === 'n:m' ? `${rule.n}:${rule.m}` : 'unstructured'} needs element salience (declare the scopes it supports)`,
    );
  }
  // The model's parameter order, whatever order the salience arrived in (streamed runs go last
  // layer first): plans are byte-identical between whole and streamed runs.
  const out: MatrixMask[] = [];
  for (const name of model.params.keys()) {
    if (!matrices.has(name)) continue;
    const m = masks.get(name);
    if (!m) throw new InputError(`criterion '${criterion.name}' returned no salience for '${name}'`);
    out.push(m);
  }
  return out;
}
