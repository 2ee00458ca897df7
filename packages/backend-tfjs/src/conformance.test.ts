import { describeBackendConformance } from '@moreau/core/testing';
import { createTfjsBackend } from './index.js';

// Core's conformance suite on both engines available here, with no skips. (node and node-gpu
// cannot be installed on these machines; they run the same lowerings.)
describeBackendConformance('tfjs (wasm)', () => createTfjsBackend({ engine: 'wasm' }));
describeBackendConformance('tfjs (cpu)', () => createTfjsBackend({ engine: 'cpu' }));
