// The conformance suite run against the reference backend itself: the forward comparisons are
// trivially exact here, so the value of this run is the finite-difference checks of every VJP rule,
// of the composite LLaMA-like block, and of the suite's own plumbing.
import { describeBackendConformance } from '@moreau/core/testing';
import { ReferenceBackend } from './index.js';

describeBackendConformance('reference', async () => new ReferenceBackend());
