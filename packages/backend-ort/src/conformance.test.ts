import { describeBackendConformance } from '@moreau/core/testing';
import { createOrtBackend } from './index.js';

// Core's conformance suite against onnxruntime (CPU EP here), with no skips.
describeBackendConformance('ort', () => createOrtBackend({ intraOpNumThreads: 2 }));
