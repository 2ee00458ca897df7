/**
 * Function transformations: `trace` turns a function of tensor trees into a graph, `valueAndGrad`
 * turns a scalar function into one that also returns gradients (still traceable), and `jit`
 * compiles per input signature on a backend and runs the executable.
 */
import { gradients } from './autodiff.js';
import { type Backend, type Executable, getBackend, isDeviceTensor, type TensorInput } from './backend.js';
import { castHost, type DType, type HostTensor } from './dtype.js';
import { MoreauError, ShapeError } from './errors.js';
import { flatten, specKey, type TreeSpec, unflatten } from './internal/pytree.js';
import type { Graph } from './ir.js';
import { type ComputeDtype, checkComputeDtype, emulatePrecision } from './precision.js';
import { GraphBuilder, isTensor, Tensor, withBuilder } from './tensor.js';

export interface TensorSpec {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

function isTensorLike(x: unknown): x is TensorInput | TensorSpec {
  if (x === null || typeof x !== 'object') return false;
  const t = x as Partial<HostTensor>;
  return Array.isArray(t.shape) && typeof t.dtype === 'string';
}

export interface Traced {
  readonly graph: Graph;
  readonly outputSpec: TreeSpec;
  readonly inputPaths: readonly string[];
}

/**
 * Traces fn on symbolic tensors shaped like `args` (host tensors, device tensors or bare
 * {shape, dtype} specs, nested in arrays / objects). Input and output names come from their
 * paths in the trees, e.g. `0.layers.3.q_proj` or a top-level object's keys.
 */
export function trace(
  fn: (...args: any[]) => unknown,
  args: readonly unknown[],
  names?: readonly string[],
): Traced {
  const builder = new GraphBuilder();
  const flat = flatten(args as unknown[], isTensorLike);
  const paths = flat.paths.map((p, i) => names?.[i] ?? p);
  // bfloat16 is a host storage type: such leaves become float32 inputs (jit converts the data).
  const symbolic = flat.leaves.map((leaf, i) =>
    builder.input(paths[i]!, leaf.shape, leaf.dtype === 'bfloat16' ? 'float32' : leaf.dtype),
  );
  const out = withBuilder(builder, () => fn(...(unflatten(flat.spec, symbolic) as unknown[])));
  const outFlat = flatten(out, isTensor);
  if (outFlat.leaves.length === 0) throw new ShapeError('trace: the function returned no tensor');
  for (const t of outFlat.leaves) {
    if (t.builder !== builder)
      throw new ShapeError('trace: the function returned a tensor from another trace');
  }
  return {
    graph: builder.finish(outFlat.leaves, outFlat.paths),
    outputSpec: outFlat.spec,
    inputPaths: paths,
  };
}

export interface ValueAndGradOptions {
  /** Which positional arguments to differentiate (default [0]). */
  readonly argnums?: number | readonly number[];
  /** fn returns [scalar, aux]; aux is passed through untouched. */
  readonly hasAux?: boolean;
}

/**
 * valueAndGrad(f)(...args) -> [value, grads] (or [[value, aux], grads] with hasAux). grads mirrors
 * the tree of each differentiated argument (one entry per argnum when argnums is an array);
 * integer leaves get null. Must run inside a trace (wrap the result in jit).
 */
export function valueAndGrad<A extends unknown[]>(
  fn: (...args: A) => unknown,
  options: ValueAndGradOptions = {},
): (...args: A) => [unknown, unknown] {
  const argnums = options.argnums ?? 0;
  const list = typeof argnums === 'number' ? [argnums] : [...argnums];
  return (...args: A) => {
    const result = fn(...args);
    const [value, aux] = options.hasAux ? (result as [Tensor, unknown]) : [result as Tensor, undefined];
    if (!isTensor(value)) throw new ShapeError('valueAndGrad: the function must return a scalar tensor');
    const trees = list.map((i) => {
      if (i < 0 || i >= args.length)
        throw new MoreauError(`valueAndGrad: argnum ${i} out of range (${args.length} args)`);
      return flatten(args[i], isTensor);
    });
    const grads = gradients(
      value,
      trees.flatMap((t) => t.leaves),
    );
    let k = 0;
    const gradTrees = trees.map((t) =>
      unflatten(
        t.spec,
        t.leaves.map(() => grads[k++]),
      ),
    );
    const g = typeof argnums === 'number' ? gradTrees[0] : gradTrees;
    return [options.hasAux ? [value, aux] : value, g];
  };
}

export interface JitOptions {
  /** A backend instance or registered name; default: the best registered backend. */
  readonly backend?: Backend | string;
  /** Names for the graph inputs in flattened order (default: their tree paths). */
  readonly inputNames?: readonly string[];
  /**
   * The dtype to compute in (default float32). float16 / bfloat16 run the traced graph through
   * emulatePrecision: every op in float32 from inputs representable in the dtype, its output
   * rounded to the dtype, gradients included (see precision.ts).
   */
  readonly computeDtype?: ComputeDtype;
}

export interface Jitted<R> {
  (...args: unknown[]): Promise<R>;
  /** The traced graph for these arguments, emulating computeDtype if set (no compilation). */
  lower(...args: unknown[]): Traced;
  /** Number of distinct input signatures compiled so far. */
  readonly cacheSize: number;
  readonly backend: Promise<Backend>;
  dispose(): void;
}

/**
 * Compiles fn once per input signature (tree structure, shapes, dtypes) and reuses the
 * executable: calling again with new weight values runs the cached graph.
 */
export function jit<R = any>(fn: (...args: any[]) => unknown, options: JitOptions = {}): Jitted<R> {
  const computeDtype = checkComputeDtype(options.computeDtype ?? 'float32');
  const lower = (args: readonly unknown[]): Traced => {
    const traced = trace(fn, args, options.inputNames);
    return computeDtype === 'float32'
      ? traced
      : { ...traced, graph: emulatePrecision(traced.graph, computeDtype) };
  };
  const cache = new Map<string, Promise<{ exe: Executable; outputSpec: TreeSpec }>>();
  let backendPromise: Promise<Backend> | undefined;
  const resolveBackend = () => {
    if (!backendPromise) {
      const b = options.backend;
      backendPromise = typeof b === 'object' ? Promise.resolve(b) : getBackend(b);
    }
    return backendPromise;
  };

  const call = async (...args: unknown[]): Promise<R> => {
    const flat = flatten(args, isTensorLike);
    // bfloat16 host data runs the float32 graph (converted below), so it shares the float32 entry.
    const key =
      `${computeDtype}:` +
      specKey(flat.spec) +
      flat.leaves
        .map((l) => `|${l.dtype === 'bfloat16' ? 'float32' : l.dtype}[${l.shape.join(',')}]`)
        .join('');
    let entry = cache.get(key);
    if (!entry) {
      entry = (async () => {
        const backend = await resolveBackend();
        if (computeDtype !== 'float32' && backend.roundsFloat32 === false) {
          throw new MoreauError(
            `jit: computeDtype ${computeDtype} is emulated with float32 arithmetic, which backend '${backend.name}' ` +
              'does not round per op (use new ReferenceBackend({ float32: true }) or a real backend)',
          );
        }
        const traced = lower(args);
        const exe = await backend.compile(traced.graph);
        return { exe, outputSpec: traced.outputSpec };
      })();
      cache.set(key, entry);
      entry.catch(() => cache.delete(key));
    }
    const { exe, outputSpec } = await entry;
    for (const leaf of flat.leaves) {
      if (!('data' in leaf) && !isDeviceTensor(leaf as TensorInput)) {
        throw new MoreauError('jit: arguments must be host or device tensors, not bare {shape, dtype} specs');
      }
    }
    const inputs = (flat.leaves as TensorInput[]).map((t) =>
      !isDeviceTensor(t) && t.dtype === 'bfloat16' ? castHost(t, 'float32') : t,
    );
    const outs = await exe.run(inputs);
    return unflatten(outputSpec, outs) as R;
  };
  const jitted = call as Jitted<R>;
  Object.defineProperty(jitted, 'cacheSize', { get: () => cache.size });
  Object.defineProperty(jitted, 'backend', { get: resolveBackend });
  jitted.lower = (...args: unknown[]) => lower(args);
  jitted.dispose = () => {
    for (const e of cache.values()) e.then((x) => x.exe.dispose()).catch(() => {});
    cache.clear();
  };
  return jitted;
}

export { Tensor };
