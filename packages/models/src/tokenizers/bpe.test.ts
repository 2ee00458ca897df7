import { describe, expect, it } from 'vitest';
import { bpeMerge, bpeMergeNaive } from './bpe.js';

function lcg(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

describe('bpeMerge', () => {
  it('equals the greedy leftmost-best loop on random vocabularies with many ties', () => {
    const rand = lcg(7);
    for (let trial = 0; trial < 300; trial++) {
      // Alphabet a..d as ids 0..3; random merged pieces with integer scores (ties are common).
      const pieces = ['a', 'b', 'c', 'd'];
      const index = new Map(pieces.map((p, i) => [p, i]));
      const scores: number[] = [0, 0, 0, 0];
      for (let k = 0; k < 30; k++) {
        const a = pieces[Math.floor(rand() * pieces.length)]!;
        const b = pieces[Math.floor(rand() * pieces.length)]!;
        const p = a + b;
        if (p.length > 6 || index.has(p)) continue;
        index.set(p, pieces.length);
        pieces.push(p);
        scores.push(Math.floor(rand() * 4) - (rand() < 0.1 ? 1e11 : 0));
      }
      const lookup = (x: number, y: number) => index.get(pieces[x]! + pieces[y]!) ?? -1;
      const s = Float32Array.from(scores);
      const n = Math.floor(rand() * 40);
      const syms = Array.from({ length: n }, () => Math.floor(rand() * 4));
      expect(bpeMerge(syms, lookup, s, -1e10)).toEqual(bpeMergeNaive(syms, lookup, s, -1e10));
      expect(bpeMerge(syms, lookup, s)).toEqual(bpeMergeNaive(syms, lookup, s));
    }
  });

  it('merges the leftmost pair on ties', () => {
    // "aaa" with piece "aa": leftmost merge gives [aa, a].
    const pieces = ['a', 'aa'];
    const lookup = (x: number, y: number) => (x === 0 && y === 0 ? 1 : -1);
    expect(bpeMerge([0, 0, 0], lookup, Float32Array.from([0, 0]))).toEqual([1, 0]);
    expect(pieces.length).toBe(2);
  });
});
