/**
 * Test fixtures for the pruning engine (not exported from the package): a toy PrunableModel small
 * enough for the reference backend, and criteria whose scores the tests choose by hand.
 *
 * The toy model: token embedding [V, D] (tied output head); per layer l an "attention" block with
 * `heads` units of 2 channels (q [2*heads, D] rows, o [D, 2*heads] columns) and an MLP with `mlp`
 * channels (up [mlp, D] rows, down [D, mlp] columns), both residual with tanh activations; a 1-D
 * `norm` scale per layer that belongs to no block group. Loss: mean next-token cross-entropy.
 * Besides the block groups it describes a hidden group (the D residual channels: embedding columns,
 * norms, q / up columns, o / down rows) and one group per whole layer.
 */
import { expect } from 'vitest';
import type { HostTensor } from '../dtype.js';
import { InputError } from '../errors.js';
import * as ops from '../ops.js';
import { Rng } from '../rng.js';
import type { StagedModel } from '../stream/staged-model.js';
import type { Tensor } from '../tensor.js';
import type { Criterion, CriterionContext } from './criterion.js';
import { cutGroups, type GroupCut, type GroupKind, type PrunableGroup } from './groups.js';
import type { PrunableModel } from './model.js';

export interface ToyLayer {
  readonly heads: number;
  readonly mlp: number;
}

export const TOY_VOCAB = 12;
export const TOY_DIM = 6;
export const TOY_HEAD_DIM = 2;

const name = (l: number, p: string) => `layers.${l}.${p}`;

export class ToyModel implements PrunableModel {
  readonly layers: readonly ToyLayer[];

  constructor(readonly params: ReadonlyMap<string, HostTensor>) {
    const layers: ToyLayer[] = [];
    for (let l = 0; params.has(name(l, 'q')); l++) {
      layers.push({
        heads: params.get(name(l, 'q'))!.shape[0]! / TOY_HEAD_DIM,
        mlp: params.get(name(l, 'up'))!.shape[0]!,
      });
    }
    this.layers = layers;
  }

  get numLayers(): number {
    return this.layers.length;
  }

  groups(kinds: readonly GroupKind[] = ['attention', 'mlp', 'hidden', 'layer']): PrunableGroup[] {
    const member = (param: string, axis: number, role: string, span: number) => ({
      param,
      axis,
      role,
      span,
      offset: 0,
    });
    const block = this.layers.flatMap((d, l): PrunableGroup[] => [
      {
        id: `layer.${l}.attention`,
        kind: 'attention',
        layer: l,
        units: d.heads,
        unitSize: TOY_HEAD_DIM,
        members: [member(name(l, 'q'), 0, 'q', TOY_HEAD_DIM), member(name(l, 'o'), 1, 'o', TOY_HEAD_DIM)],
      },
      {
        id: `layer.${l}.mlp`,
        kind: 'mlp',
        layer: l,
        units: d.mlp,
        unitSize: 1,
        members: [member(name(l, 'up'), 0, 'up', 1), member(name(l, 'down'), 1, 'down', 1)],
      },
    ]);
    const dim = this.params.get('embed')!.shape[1]!;
    const hidden: PrunableGroup = {
      id: 'hidden',
      kind: 'hidden',
      layer: -1,
      units: dim,
      unitSize: 1,
      members: [
        member('embed', 1, 'embed', 1),
        ...this.layers.flatMap((_, l) => [
          member(name(l, 'norm'), 0, 'norm', 1),
          member(name(l, 'q'), 1, 'q', 1),
          member(name(l, 'o'), 0, 'o', 1),
          member(name(l, 'up'), 1, 'up', 1),
          member(name(l, 'down'), 0, 'down', 1),
        ]),
      ],
    };
    const whole = this.layers.map(
      (d, l): PrunableGroup => ({
        id: `layer.${l}`,
        kind: 'layer',
        layer: l,
        units: 1,
        unitSize: 1,
        members: [
          member(name(l, 'norm'), 0, 'norm', dim),
          member(name(l, 'q'), 0, 'q', d.heads * TOY_HEAD_DIM),
          member(name(l, 'o'), 0, 'o', dim),
          member(name(l, 'up'), 0, 'up', d.mlp),
          member(name(l, 'down'), 0, 'down', dim),
        ],
      }),
    );
    return [...block, hidden, ...whole].filter((g) => kinds.includes(g.kind));
  }

  loss(p: Readonly<Record<string, Tensor>>, ids: Tensor): Tensor {
    const [, T] = ids.shape as [number, number];
    let x = ops.gather(p.embed!, ops.slice(ids, 1, 0, T - 1));
    for (let l = 0; l < this.numLayers; l++) {
      const h = ops.mul(x, p[name(l, 'norm')]!);
      const attn = ops.linear(ops.tanh(ops.linear(h, p[name(l, 'q')]!)), p[name(l, 'o')]!);
      const mlp = ops.linear(ops.tanh(ops.linear(h, p[name(l, 'up')]!)), p[name(l, 'down')]!);
      x = ops.add(x, ops.add(attn, mlp));
    }
    return ops.crossEntropy(ops.linear(x, p.embed!), ops.slice(ids, 1, 1, T));
  }

  /** Slices with core's cutGroups; a layer group with nothing kept removes the layer (renumbering). */
  cut(cuts: readonly GroupCut[]): ToyModel {
    const sliced = cutGroups(
      this.params,
      cuts.filter((c) => c.group.kind !== 'layer'),
    );
    const removed = new Set(
      cuts.filter((c) => c.group.kind === 'layer' && !c.kept.length).map((c) => c.group.layer),
    );
    const params = new Map<string, HostTensor>([['embed', sliced.get('embed')!]]);
    let next = 0;
    for (let l = 0; l < this.numLayers; l++) {
      if (removed.has(l)) continue;
      for (const p of ['norm', 'q', 'o', 'up', 'down']) params.set(name(next, p), sliced.get(name(l, p))!);
      next++;
    }
    return new ToyModel(params);
  }

  withParams(params: ReadonlyMap<string, HostTensor>): ToyModel {
    return new ToyModel(params);
  }

  /** Embedding, one stage per layer, and the tied output head. */
  stages(): StagedModel {
    return {
      embed: { key: 'embed', params: { embed: 'embed' } },
      layers: this.layers.map((d, l) => ({
        key: `layer:${d.heads}:${d.mlp}`,
        params: Object.fromEntries(['norm', 'q', 'o', 'up', 'down'].map((k) => [k, name(l, k)])),
      })),
      head: { key: 'head', params: { embed: 'embed' } },
      embedFn: (p, ids) => ops.gather(p.embed!, ids),
      layerFn: () => (p, x) => {
        const h = ops.mul(x, p.norm!);
        const attn = ops.linear(ops.tanh(ops.linear(h, p.q!)), p.o!);
        const mlp = ops.linear(ops.tanh(ops.linear(h, p.up!)), p.down!);
        return ops.add(x, ops.add(attn, mlp));
      },
      headFn: (p, h) => ops.linear(h, p.embed!),
    };
  }
}

/** Seeded N(0, 0.5^2) weights, norms 1. */
export function toyModel(layers: readonly ToyLayer[], seed = 1): ToyModel {
  const rng = new Rng(seed);
  const params = new Map<string, HostTensor>();
  const add = (n: string, shape: number[]) =>
    params.set(n, {
      dtype: 'float32',
      shape,
      data:
        shape.length === 1
          ? new Float32Array(shape[0]!).fill(1)
          : rng.normalArray(shape[0]! * shape[1]!, 0, 0.5),
    });
  add('embed', [TOY_VOCAB, TOY_DIM]);
  layers.forEach((d, l) => {
    add(name(l, 'norm'), [TOY_DIM]);
    add(name(l, 'q'), [d.heads * TOY_HEAD_DIM, TOY_DIM]);
    add(name(l, 'o'), [TOY_DIM, d.heads * TOY_HEAD_DIM]);
    add(name(l, 'up'), [d.mlp, TOY_DIM]);
    add(name(l, 'down'), [TOY_DIM, d.mlp]);
  });
  return new ToyModel(params);
}

/**
 * A criterion whose unit scores a test chooses: `scores(group, call)` gets the current group (unit
 * count after earlier cuts) and the 0-based scoring call, and returns one score per current unit.
 */
export function fixedCriterion(
  scores: (group: PrunableGroup, call: number) => readonly number[],
  name = 'fixed',
): Criterion & { readonly calls: number; readonly contexts: CriterionContext[] } {
  const contexts: CriterionContext[] = [];
  return {
    name,
    description: 'test criterion with hand-chosen unit scores',
    requires: { gradients: false, calibration: false },
    options: {},
    channelMode: () => 'abs-then-sum',
    defaultReduction: 'sum',
    get calls() {
      return contexts.length;
    },
    contexts,
    async score(ctx) {
      const call = contexts.length;
      contexts.push(ctx);
      return { unitScores: ctx.groups.map((g) => Float64Array.from(scores(g, call))) };
    },
  };
}

/** The InputError `f` throws (fails the test when it throws none or another kind). */
export function inputErrorOf(f: () => unknown): InputError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error('expected an InputError');
}
