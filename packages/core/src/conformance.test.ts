// The conformance suite run against the reference backend itself: the forward comparisons are
// trivially exact here, so the value of this run is the finite-difference checks of every VJP rule,
// of the composite LLaMA-like block, and of the suite's own plumbing.
import { describeBackendConformance } from '@moreau/core/testing';
import { ReferenceBackend } from './index.js';

describeBackendConformance('reference', async () => new ReferenceBackend(), {
  skip: {
    precision:
      'emulated half precision needs float32 rounding per op; the float32-rounding interpreter runs it below',
  },
});

// The same interpreter rounding every float32 result (an IEEE float32 engine): the precision group.
const covered = 'covered by the float64 run above';
describeBackendConformance(
  'reference (float32 rounding)',
  async () => new ReferenceBackend({ float32: true }),
  {
    skip: {
      primitives: covered,
      gradients: covered,
      lowerings: covered,
      contract: covered,
      'llama-like block': covered,
    },
  },
);
