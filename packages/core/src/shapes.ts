import { ShapeError } from './errors.js';

export function broadcastShapes(what: string, ...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v === 1) continue;
      if (d !== 1 && d !== v) {
        throw new ShapeError(
          `${what}: shapes ${shapes.map((x) => `[${x.join(',')}]`).join(' and ')} do not broadcast`,
        );
      }
      d = v;
    }
    // A zero-size axis broadcasts against 1 to zero.
    if (shapes.some((s) => (s[s.length - rank + i] ?? 1) === 0)) d = 0;
    out.push(d);
  }
  return out;
}

export function stridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i]!;
  }
  return st;
}

/** Strides of `shape` read as if broadcast to `outShape` (0 on broadcast axes). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const st = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_d, i) => (i < off || shape[i - off] === 1 ? 0 : st[i - off]!));
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}
