import { primitives } from './internal/registry.js';
import type { Primitive } from './ir.js';
import './primitives.js';

/** Names of every primitive a backend must lower (input and constant are graph plumbing). */
export const PRIMITIVES: readonly Exclude<Primitive, 'input' | 'constant'>[] = [...primitives.keys()].filter(
  (n) => n !== 'input' && n !== 'constant',
);
