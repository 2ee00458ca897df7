/**
 * Reverse-mode differentiation of a traced graph. Walks the nodes between the inputs being
 * differentiated and the scalar output in reverse topological order, applying each primitive's
 * VJP rule and summing cotangents where a value fans out. The backward nodes are appended to the
 * same graph, so forward and backward compile and run as one executable.
 */
import { scalar as hostScalar, isFloat } from './dtype.js';
import { ShapeError } from './errors.js';
import { primitiveRule } from './internal/registry.js';
import * as ops from './ops.js';
import { type GraphBuilder, Tensor, withBuilder } from './tensor.js';

/**
 * Gradients of the scalar `y` with respect to each of `xs`. Integer and bool tensors get null;
 * float tensors that `y` does not depend on get zeros.
 */
export function gradients(y: Tensor, xs: readonly Tensor[]): (Tensor | null)[] {
  if (y.rank !== 0 || !isFloat(y.dtype)) {
    throw new ShapeError(
      `gradients: the output must be a float scalar, got shape [${y.shape.join(',')}] ${y.dtype}`,
    );
  }
  const b: GraphBuilder = y.builder;
  const nodes = b.nodes;
  const wanted = new Set(xs.filter((x) => isFloat(x.dtype)).map((x) => x.id));

  // Nodes that depend on a wanted input: only they carry a gradient.
  const live = new Set<number>();
  for (let i = 0; i <= y.id; i++) {
    const n = nodes[i]!;
    if (wanted.has(i) || (n.op !== 'stopGradient' && n.inputs.some((j) => live.has(j)))) live.add(i);
  }

  const cot = new Map<number, Tensor>();
  cot.set(y.id, b.constant(hostScalar(1, 'float32')));
  for (let i = y.id; i >= 0; i--) {
    const g = cot.get(i);
    if (!g || !live.has(i)) continue;
    const n = nodes[i]!;
    if (n.op === 'input' || n.op === 'constant') continue;
    const rule = primitiveRule(n.op);
    if (!rule.vjp) continue;
    const inputs = n.inputs.map((j) => new Tensor(b, j));
    // VJP rules may create constants: make y's graph the active trace while they run.
    const grads = withBuilder(b, () => rule.vjp!(g, inputs, new Tensor(b, i), n.attrs));
    n.inputs.forEach((j, k) => {
      const gj = grads[k];
      if (!gj || !live.has(j) || !isFloat(nodes[j]!.dtype)) return;
      const want = nodes[j]!.shape;
      if (gj.rank !== want.length || gj.shape.some((d, a) => d !== want[a])) {
        throw new ShapeError(
          `gradients: the VJP of '${n.op}' returned a cotangent of shape [${gj.shape.join(',')}] ` +
            `for input ${k} of shape [${want.join(',')}]`,
        );
      }
      const prev = cot.get(j);
      cot.set(j, prev ? ops.add(prev, gj) : gj);
    });
  }
  return xs.map((x) => {
    if (!isFloat(x.dtype)) return null;
    const g = cot.get(x.id);
    // Gradients of half-precision inputs are reported in float32.
    if (g) return g;
    return ops.broadcastTo(b.constant(hostScalar(0, 'float32')), x.shape);
  });
}
