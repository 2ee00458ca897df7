/**
 * Symbolic tensors and the graph builder that records them while a function is traced.
 * A Tensor is a handle to one node of the graph being built; operations on it append nodes.
 */
import type { DType, HostTensor } from './dtype.js';
import { ShapeError } from './errors.js';
import { primitiveRule } from './internal/registry.js';
import type { Graph, NoAttrs, Node, NodeOf, Primitive, PrimitiveAttrs } from './ir.js';
import * as ops from './ops.js';

export class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly inputs: number[] = [];
  readonly constants = new Map<string, HostTensor>();
  private readonly scalarCache = new Map<string, number>();
  private readonly keyedCache = new Map<string, number>();

  /** Appends a node of primitive `op`; its attributes may be left out when it has none. */
  emit<P extends Primitive>(
    op: P,
    inputs: readonly Tensor[],
    ...[given]: NoAttrs extends PrimitiveAttrs[P] ? [PrimitiveAttrs[P]?] : [PrimitiveAttrs[P]]
  ): Tensor {
    for (const t of inputs) {
      if (t.builder !== this) throw new ShapeError(`${op}: an input tensor belongs to a different trace`);
    }
    const attrs = given ?? ({} as PrimitiveAttrs[P]);
    const rule = primitiveRule(op);
    const out = rule.infer(inputs, attrs);
    const id = this.nodes.length;
    const node: NodeOf<P> = {
      id,
      op,
      inputs: inputs.map((t) => t.id),
      attrs,
      shape: [...out.shape],
      dtype: out.dtype,
    };
    this.nodes.push(node as Node);
    return new Tensor(this, id);
  }

  input(name: string, shape: readonly number[], dtype: DType): Tensor {
    const id = this.nodes.length;
    this.nodes.push({
      id,
      op: 'input',
      inputs: [],
      attrs: { name, index: this.inputs.length },
      shape: [...shape],
      dtype,
    });
    this.inputs.push(id);
    return new Tensor(this, id);
  }

  constant(value: HostTensor): Tensor {
    // Object.is keeps -0 apart from 0 (String(-0) is '0'; 1 / -0 is -inf).
    const v = value.data[0]!;
    const scalarKey =
      value.data.length === 1 && value.shape.length === 0
        ? `${value.dtype}:${Object.is(v, -0) ? '-0' : String(v)}`
        : '';
    if (scalarKey) {
      const cached = this.scalarCache.get(scalarKey);
      if (cached !== undefined) return new Tensor(this, cached);
    }
    const key = `c${this.constants.size}`;
    this.constants.set(key, value);
    const id = this.nodes.length;
    this.nodes.push({
      id,
      op: 'constant',
      inputs: [],
      attrs: { constant: key },
      shape: [...value.shape],
      dtype: value.dtype,
    });
    if (scalarKey) this.scalarCache.set(scalarKey, id);
    return new Tensor(this, id);
  }

  /** A constant built once per trace under `key` (for large, repeated constants such as ranges). */
  cachedConstant(key: string, make: () => HostTensor): Tensor {
    const cached = this.keyedCache.get(key);
    if (cached !== undefined) return new Tensor(this, cached);
    const t = this.constant(make());
    this.keyedCache.set(key, t.id);
    return t;
  }

  node(id: number): Node {
    return this.nodes[id]!;
  }

  /**
   * Freezes the graph with these outputs. Nodes that no output depends on (e.g. cotangents a VJP
   * computed for a constant) are dropped and the rest renumbered; every input is kept.
   */
  finish(outputs: readonly Tensor[], outputNames: readonly string[]): Graph {
    const live = new Uint8Array(this.nodes.length);
    for (const t of outputs) live[t.id] = 1;
    for (const id of this.inputs) live[id] = 1;
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      if (live[i]) for (const j of this.nodes[i]!.inputs) live[j] = 1;
    }
    const remap = new Int32Array(this.nodes.length).fill(-1);
    const nodes: Node[] = [];
    const constants = new Map<string, HostTensor>();
    for (const n of this.nodes) {
      if (!live[n.id]) continue;
      remap[n.id] = nodes.length;
      if (n.op === 'constant') {
        const key = n.attrs.constant;
        constants.set(key, this.constants.get(key)!);
      }
      nodes.push({ ...n, id: nodes.length, inputs: n.inputs.map((j) => remap[j]!) });
    }
    return {
      nodes,
      inputs: this.inputs.map((id) => remap[id]!),
      outputs: outputs.map((t) => remap[t.id]!),
      outputNames: outputNames.slice(),
      constants,
    };
  }
}

export class Tensor {
  constructor(
    readonly builder: GraphBuilder,
    readonly id: number,
  ) {}

  get shape(): readonly number[] {
    return this.builder.node(this.id).shape;
  }
  get dtype(): DType {
    return this.builder.node(this.id).dtype;
  }
  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }

  add(b: Tensor | number): Tensor {
    return ops.add(this, b);
  }
  sub(b: Tensor | number): Tensor {
    return ops.sub(this, b);
  }
  mul(b: Tensor | number): Tensor {
    return ops.mul(this, b);
  }
  div(b: Tensor | number): Tensor {
    return ops.div(this, b);
  }
  neg(): Tensor {
    return ops.neg(this);
  }
  matmul(b: Tensor): Tensor {
    return ops.matmul(this, b);
  }
  sum(axes?: number | readonly number[], keepDims = false): Tensor {
    return ops.sum(this, axes, keepDims);
  }
  mean(axes?: number | readonly number[], keepDims = false): Tensor {
    return ops.mean(this, axes, keepDims);
  }
  max(axes?: number | readonly number[], keepDims = false): Tensor {
    return ops.max(this, axes, keepDims);
  }
  reshape(shape: readonly number[]): Tensor {
    return ops.reshape(this, shape);
  }
  transpose(perm?: readonly number[]): Tensor {
    return ops.transpose(this, perm);
  }
  cast(dtype: DType): Tensor {
    return ops.cast(this, dtype);
  }
  toString(): string {
    return `Tensor(%${this.id}, [${this.shape.join(', ')}], ${this.dtype})`;
  }
}

export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}

const traceStack: GraphBuilder[] = [];

/** Runs fn with `builder` as the active trace (for ops that create tensors from nothing). */
export function withBuilder<T>(builder: GraphBuilder, fn: () => T): T {
  traceStack.push(builder);
  try {
    return fn();
  } finally {
    traceStack.pop();
  }
}

export function currentBuilder(): GraphBuilder {
  const b = traceStack[traceStack.length - 1];
  if (!b) throw new ShapeError('no active trace: call this inside a function passed to jit() or trace()');
  return b;
}
