import { registerCriterion } from '@moreau/core';
import { blockInfluence } from './block-influence.js';
import { magnitude } from './magnitude.js';
import { moreau, moreauGs } from './moreau.js';
import { random } from './random.js';
import { taylor } from './taylor.js';

/** The built-in criteria, registered by name on import. */
export const builtinCriteria = [magnitude, random, taylor, moreau, moreauGs, blockInfluence] as const;
for (const c of builtinCriteria) registerCriterion(c);

export { blockInfluence, magnitude, moreau, moreauGs, random, taylor };
