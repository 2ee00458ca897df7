/**
 * Symbolic dimensions for ONNX export: the IR has static shapes, so a graph whose sizes should stay
 * open (batch, sequence length, cache length) is traced several times at different sizes ("probes"),
 * the traces are checked to be the same graph, and every size in them (node shapes and the size
 * attributes of reshape / broadcastTo / slice / pad) is fitted, across the probes, by an integer
 * polynomial of degree <= 2 in the symbols (`B`, `T`, `P + T`, `B*T`, `2*T`, ...). A size that is the
 * same in every probe stays a number. The fit is exact or an error: after solving on as many probes
 * as there are monomials, it must reproduce every probe, including two spares.
 *
 * What cannot be fitted is refused with the node named: a constant whose value depends on the sizes
 * (build it in the graph, or slice / gather a fixed-size table), a graph whose structure changes
 * with the sizes, a size that is no such polynomial.
 */
import type { Graph, HostTensor, Node } from './core.js';
import { MoreauError } from './core.js';

/** A symbolic size: integer coefficients by monomial ('' constant, 'T', 'B*T', 'T*T'; factors sorted). */
export class SymDim {
  readonly terms: ReadonlyMap<string, number>;
  constructor(terms: ReadonlyMap<string, number>) {
    const kept = [...terms].filter(([, c]) => c !== 0).sort(([a], [b]) => monomialOrder(a, b));
    this.terms = new Map(kept);
  }

  /** Canonical text over the symbols' keys, e.g. `P + T`, `B*T`, `2*T + 1`. */
  get key(): string {
    return this.format((s) => s);
  }

  /** Human-readable, with each symbol spelled by `name` (ONNX dim_param strings). */
  format(name: (symbol: string) => string): string {
    const parts: string[] = [];
    for (const [mono, c] of this.terms) {
      const factors = mono === '' ? [] : mono.split('*').map(name);
      const body = factors.join('*');
      const mag = Math.abs(c);
      const term = body === '' ? String(mag) : mag === 1 ? body : `${mag}*${body}`;
      parts.push(parts.length === 0 ? (c < 0 ? `-${term}` : term) : `${c < 0 ? '-' : '+'} ${term}`);
    }
    return parts.length === 0 ? '0' : parts.join(' ');
  }

  /** The single symbol this size is (coefficient 1, nothing else), if it is one. */
  get bareSymbol(): string | undefined {
    if (this.terms.size !== 1) return undefined;
    const [[mono, c]] = [...this.terms] as [[string, number]];
    return c === 1 && mono !== '' && !mono.includes('*') ? mono : undefined;
  }

  evaluate(values: Readonly<Record<string, number>>): number {
    let v = 0;
    for (const [mono, c] of this.terms) {
      let m = c;
      if (mono !== '') for (const s of mono.split('*')) m *= values[s]!;
      v += m;
    }
    return v;
  }
}

/** A dimension: a static size or a symbolic one. */
export type Dim = number | SymDim;

function monomialOrder(a: string, b: string): number {
  const da = a === '' ? 0 : a.split('*').length;
  const db = b === '' ? 0 : b.split('*').length;
  return db - da || (a < b ? -1 : a > b ? 1 : 0);
}

export const isStatic = (d: Dim): d is number => typeof d === 'number';

export function dimKey(d: Dim): string {
  return isStatic(d) ? String(d) : d.key;
}

export function dimsEqual(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => dimKey(d) === dimKey(b[i]!));
}

/** Monomials of degree <= 2 in `symbols`: '', each symbol, each product of two (squares included). */
function monomials(symbols: readonly string[]): string[] {
  const s = [...symbols].sort();
  const out = [''];
  for (const a of s) out.push(a);
  for (let i = 0; i < s.length; i++) for (let j = i; j < s.length; j++) out.push(`${s[i]}*${s[j]}`);
  return out;
}

function monomialValue(mono: string, values: Readonly<Record<string, number>>): number {
  if (mono === '') return 1;
  return mono.split('*').reduce((p, s) => p * values[s]!, 1);
}

/** Gauss-Jordan inverse of a small square matrix, or undefined when it is singular. */
function invert(m: number[][]): number[][] | undefined {
  const n = m.length;
  const a = m.map((row, i) => [...row, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    if (Math.abs(a[pivot]![col]!) < 1e-9) return undefined;
    [a[col], a[pivot]] = [a[pivot]!, a[col]!];
    const p = a[col]![col]!;
    for (let j = 0; j < 2 * n; j++) a[col]![j]! /= p;
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = a[r]![col]!;
      if (f !== 0) for (let j = 0; j < 2 * n; j++) a[r]![j]! -= f * a[col]![j]!;
    }
  }
  return a.map((row) => row.slice(n));
}

/**
 * The sizes to trace at: enough assignments of the symbols to determine every polynomial of degree
 * <= 2 (as many as there are monomials, chosen so the system is solvable) plus two spares that check
 * the fit. Each symbol is at least 2 and the symbols differ within a probe, so no size is 1 or
 * coincides with another by accident. Deterministic.
 */
export function probeSizes(symbols: readonly string[]): Record<string, number>[] {
  const monos = monomials(symbols);
  const need = monos.length + 2;
  const probes: Record<string, number>[] = [];
  let rows: number[][] = [];
  let state = 12345;
  const next = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state >>> 8;
  };
  for (let attempt = 0; probes.length < need && attempt < 10_000; attempt++) {
    const values: Record<string, number> = {};
    const used = new Set<number>();
    for (const s of symbols) {
      let v: number;
      do v = 2 + (next() % 12);
      while (used.has(v));
      used.add(v);
      values[s] = v;
    }
    if (probes.some((p) => symbols.every((s) => p[s] === values[s]))) continue;
    const row = monos.map((m) => monomialValue(m, values));
    if (probes.length < monos.length) {
      const trial = [...rows, row];
      // Keep a probe only if it adds rank (the first monos.length probes must be independent).
      if (trial.length === monos.length ? invert(trial) === undefined : !independent(trial)) continue;
      rows = trial;
    }
    probes.push(values);
  }
  if (probes.length < need)
    throw new MoreauError(`symbolic export: cannot choose probe sizes for ${symbols}`);
  return probes;
}

/** Whether the rows are linearly independent (rank = row count), by elimination. */
function independent(rows: number[][]): boolean {
  const a = rows.map((r) => [...r]);
  const n = a.length;
  const cols = a[0]!.length;
  let rank = 0;
  for (let col = 0; col < cols && rank < n; col++) {
    let pivot = -1;
    for (let r = rank; r < n; r++) if (Math.abs(a[r]![col]!) > 1e-9) pivot = r;
    if (pivot < 0) continue;
    [a[rank], a[pivot]] = [a[pivot]!, a[rank]!];
    for (let r = 0; r < n; r++) {
      if (r === rank) continue;
      const f = a[r]![col]! / a[rank]![col]!;
      for (let j = col; j < cols; j++) a[r]![j]! -= f * a[rank]![j]!;
    }
    rank++;
  }
  return rank === n;
}

/** Fits integer polynomials in the symbols to values observed at the probes. */
class Fitter {
  private readonly monos: string[];
  private readonly inverse: number[][];
  constructor(
    private readonly probes: readonly Record<string, number>[],
    symbols: readonly string[],
  ) {
    this.monos = monomials(symbols);
    const square = probes.slice(0, this.monos.length).map((p) => this.monos.map((m) => monomialValue(m, p)));
    const inv = invert(square);
    if (!inv) throw new MoreauError('symbolic export: the probe sizes do not determine the fit');
    this.inverse = inv;
  }

  /** The dimension taking `values[k]` at probe k, or undefined when no integer polynomial does. */
  fit(values: readonly number[]): Dim | undefined {
    if (values.every((v) => v === values[0])) return values[0]!;
    const n = this.monos.length;
    const coef = this.monos.map((_, i) => {
      let c = 0;
      for (let k = 0; k < n; k++) c += this.inverse[i]![k]! * values[k]!;
      return Math.round(c);
    });
    const sym = new SymDim(new Map(this.monos.map((m, i) => [m, coef[i]!])));
    const exact = this.probes.every((p, k) => sym.evaluate(p) === values[k]);
    return exact ? sym : undefined;
  }
}

/** Attributes that hold sizes (fitted); every other attribute must be the same in every trace. */
const SIZE_ATTRS: Readonly<Record<string, readonly string[]>> = {
  reshape: ['shape'],
  broadcastTo: ['shape'],
  slice: ['starts', 'ends'],
  pad: ['before', 'after'],
  scatterAdd: ['size'],
};

/** Where a symbol's value is read at run time: a graph input's axis whose size is that symbol. */
export interface SymbolSource {
  readonly symbol: string;
  readonly input: number;
  readonly axis: number;
}

/** A traced graph with its sizes made symbolic. */
export interface SymbolicGraph {
  /** The first probe's graph: structure, dtypes, constants. Its numeric sizes are those of that probe. */
  readonly graph: Graph;
  /** Every probe's graph (the first is `graph`), for analyses that must hold at every size. */
  readonly graphs: readonly Graph[];
  readonly symbols: readonly string[];
  /** Per node id: its shape, symbolic where it varies. */
  readonly shapes: readonly (readonly Dim[])[];
  /** Per node id with size attributes: each such attribute, symbolic where it varies. */
  readonly attrs: ReadonlyMap<number, Readonly<Record<string, readonly Dim[]>>>;
  /** For each symbol, a graph input and axis that carries it. */
  readonly sources: readonly SymbolSource[];
  /** Whether anything is symbolic at all. */
  readonly dynamic: boolean;
}

function describeNode(n: Node): string {
  return `node %${n.id} (${n.op})`;
}

function sameHost(a: HostTensor, b: HostTensor): boolean {
  if (a === b) return true;
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length) return false;
  if (a.shape.some((d, i) => d !== b.shape[i])) return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * Traces `build` at probe sizes of `symbols` and returns the graph with symbolic sizes. `build(sizes)`
 * must return the same graph structure for every assignment of sizes.
 */
export function traceSymbolic(
  symbols: readonly string[],
  build: (sizes: Readonly<Record<string, number>>) => Graph,
): SymbolicGraph {
  if (symbols.length === 0) {
    const graph = build({});
    return {
      graph,
      graphs: [graph],
      symbols: [],
      shapes: graph.nodes.map((n) => n.shape),
      attrs: new Map(),
      sources: [],
      dynamic: false,
    };
  }
  const probes = probeSizes(symbols);
  const graphs = probes.map((p) => build(p));
  const g0 = graphs[0]!;
  const at = (p: Record<string, number>) => symbols.map((s) => `${s}=${p[s]}`).join(', ');
  graphs.forEach((g, k) => {
    const differ = (what: string): never => {
      throw new MoreauError(
        `symbolic export: the graph traced at ${at(probes[k]!)} differs from the one at ${at(probes[0]!)}: ${what}; ` +
          'the traced function must build the same graph for every size',
      );
    };
    if (g.nodes.length !== g0.nodes.length) differ(`${g.nodes.length} nodes instead of ${g0.nodes.length}`);
    if (g.inputs.join() !== g0.inputs.join() || g.outputs.join() !== g0.outputs.join())
      differ('inputs or outputs');
    g.nodes.forEach((n, i) => {
      const n0 = g0.nodes[i]!;
      if (n.op !== n0.op || n.dtype !== n0.dtype || n.inputs.join() !== n0.inputs.join())
        differ(`${describeNode(n0)} became ${n.op}`);
      if (n.shape.length !== n0.shape.length) differ(`${describeNode(n0)} changed rank`);
      const sized = SIZE_ATTRS[n.op] ?? [];
      for (const [k2, v] of Object.entries(n.attrs)) {
        const v0 = (n0.attrs as Record<string, unknown>)[k2];
        if (sized.includes(k2)) {
          if (Array.isArray(v) && (v as unknown[]).length !== (v0 as unknown[]).length)
            differ(`${describeNode(n0)}.${k2} changed length`);
        } else if (JSON.stringify(v) !== JSON.stringify(v0)) {
          differ(`${describeNode(n0)}.${k2} is ${JSON.stringify(v)} instead of ${JSON.stringify(v0)}`);
        }
      }
      if (n.op === 'constant') {
        const key = n.attrs.constant;
        if (!sameHost(g.constants.get(key)!, g0.constants.get(key)!)) {
          throw new MoreauError(
            `symbolic export: constant ${describeNode(n0)} [${g0.constants.get(key)!.shape}] depends on the traced ` +
              `sizes (${at(probes[0]!)} vs ${at(probes[k]!)}): compute it in the graph, or slice / gather a fixed-size table`,
          );
        }
      }
    });
  });

  const fitter = new Fitter(probes, symbols);
  let dynamic = false;
  const fitAll = (values: readonly number[][], where: string): Dim[] =>
    values[0]!.map((_, j) => {
      const series = values.map((v) => v[j]!);
      const d = fitter.fit(series);
      if (d === undefined) {
        throw new MoreauError(
          `symbolic export: ${where}[${j}] takes ${series.join(', ')} at sizes ${probes.map(at).join(' / ')}, ` +
            `which no integer polynomial of degree <= 2 in ${symbols.join(', ')} gives`,
        );
      }
      if (!isStatic(d)) dynamic = true;
      return d;
    });
  const shapes = g0.nodes.map((n) =>
    fitAll(
      graphs.map((g) => [...g.nodes[n.id]!.shape]),
      `the shape of ${describeNode(n)}`,
    ),
  );
  const attrs = new Map<number, Record<string, readonly Dim[]>>();
  for (const n of g0.nodes) {
    const sized = SIZE_ATTRS[n.op];
    if (!sized) continue;
    const rec: Record<string, readonly Dim[]> = {};
    for (const k of sized) {
      const series = graphs.map((g) => {
        const v = (g.nodes[n.id]!.attrs as Record<string, unknown>)[k];
        return Array.isArray(v) ? (v as number[]) : [v as number];
      });
      rec[k] = fitAll(series, `${describeNode(n)}.${k}`);
    }
    attrs.set(n.id, rec);
  }
  const sources: SymbolSource[] = symbols.map((symbol) => {
    for (const [input, id] of g0.inputs.entries()) {
      const axis = shapes[id]!.findIndex((d) => !isStatic(d) && d.bareSymbol === symbol);
      if (axis >= 0) return { symbol, input, axis };
    }
    throw new MoreauError(
      `symbolic export: no graph input has a dimension that is exactly ${symbol}, so its value cannot be read at run time`,
    );
  });
  return { graph: g0, graphs, symbols: [...symbols], shapes, attrs, sources, dynamic };
}
