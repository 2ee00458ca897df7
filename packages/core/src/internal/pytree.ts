/**
 * Nested arrays / plain objects of tensors ("pytrees"). Leaves are tensors; other primitive
 * values (numbers, strings, booleans, null) are static and become part of the structure.
 * Object keys are visited in sorted order so structure does not depend on insertion order.
 */
export type TreeSpec =
  | { kind: 'leaf' }
  | { kind: 'static'; value: unknown }
  | { kind: 'array'; items: TreeSpec[] }
  | { kind: 'object'; keys: string[]; items: TreeSpec[] };

export interface Flat<L> {
  leaves: L[];
  paths: string[];
  spec: TreeSpec;
}

export function flatten<L>(tree: unknown, isLeaf: (x: unknown) => x is L, path = ''): Flat<L> {
  const leaves: L[] = [];
  const paths: string[] = [];
  const walk = (x: unknown, p: string): TreeSpec => {
    if (isLeaf(x)) {
      leaves.push(x);
      paths.push(p || 'value');
      return { kind: 'leaf' };
    }
    if (Array.isArray(x))
      return { kind: 'array', items: x.map((v, i) => walk(v, p ? `${p}.${i}` : String(i))) };
    if (x !== null && typeof x === 'object' && Object.getPrototypeOf(x) === Object.prototype) {
      const keys = Object.keys(x).sort();
      return {
        kind: 'object',
        keys,
        items: keys.map((k) => walk((x as Record<string, unknown>)[k], p ? `${p}.${k}` : k)),
      };
    }
    if (x === null || x === undefined || ['number', 'string', 'boolean'].includes(typeof x)) {
      return { kind: 'static', value: x };
    }
    throw new TypeError(`unsupported value in a tensor tree at '${p}': ${Object.prototype.toString.call(x)}`);
  };
  const spec = walk(tree, path);
  return { leaves, paths, spec };
}

export function unflatten<L>(spec: TreeSpec, leaves: readonly L[]): unknown {
  let i = 0;
  const build = (s: TreeSpec): unknown => {
    switch (s.kind) {
      case 'leaf':
        return leaves[i++];
      case 'static':
        return s.value;
      case 'array':
        return s.items.map(build);
      case 'object':
        return Object.fromEntries(s.keys.map((k, j) => [k, build(s.items[j]!)]));
    }
  };
  return build(spec);
}

export function specKey(spec: TreeSpec): string {
  return JSON.stringify(spec);
}
