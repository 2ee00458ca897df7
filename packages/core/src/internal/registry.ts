/** The table of primitives: each entry holds a primitive's shape rule, VJP and reference rule. */
import type { DType } from '../dtype.js';
import type { Primitive, PrimitiveAttrs } from '../ir.js';
import type { Tensor } from '../tensor.js';

export interface AbstractValue {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** Values inside the reference interpreter: floats widened to float64. */
export interface RefValue {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly data: Float64Array | Int32Array | Uint8Array;
}

export interface PrimitiveRule<P extends Primitive = Primitive> {
  readonly name: P;
  /** Output shape and dtype, or a ShapeError naming the primitive and the offending input. */
  infer(inputs: readonly AbstractValue[], attrs: PrimitiveAttrs[P]): AbstractValue;
  /**
   * Cotangents of the inputs given the output cotangent `g` (null: no gradient flows, e.g. to
   * integer inputs). Omitted for primitives with no derivative (comparisons, stopGradient).
   */
  vjp?(g: Tensor, inputs: readonly Tensor[], out: Tensor, attrs: PrimitiveAttrs[P]): (Tensor | null)[];
  /** The oracle: a straightforward float64 implementation. */
  reference(inputs: readonly RefValue[], attrs: PrimitiveAttrs[P], out: AbstractValue): RefValue;
}

export const primitives = new Map<Primitive, PrimitiveRule>();

export function definePrimitive<P extends Primitive>(rule: PrimitiveRule<P>): void {
  if (primitives.has(rule.name)) throw new Error(`primitive '${rule.name}' is defined twice`);
  primitives.set(rule.name, rule);
}

export function primitiveRule(name: Primitive): PrimitiveRule {
  const rule = primitives.get(name);
  if (!rule) throw new Error(`unknown primitive '${name}'; known: ${[...primitives.keys()].join(', ')}`);
  return rule;
}
