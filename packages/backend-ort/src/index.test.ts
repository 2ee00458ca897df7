import { readFileSync } from 'node:fs';
import { getBackend, listBackends, ops, trace } from '@moreau/core';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { createOrtBackend, ortAvailableProviders } from './index.js';
import { lowerGraph, SUPPORTED_PRIMITIVES } from './internal/lower.js';
import { ONNX_DESCRIPTOR_JSON } from './internal/onnx-descriptor.js';
import { decodeModel, encodeModel } from './internal/proto.js';

describe('@moreau/backend-ort', () => {
  it("registers itself as 'ort' on import, and getBackend creates it", async () => {
    expect(listBackends()).toContain('ort');
    const b = await getBackend('ort');
    expect(b.name).toBe('ort');
    expect(b.device).toBe('cpu');
  });

  it('lowers every primitive core defines', async () => {
    const { PRIMITIVES } = await import('@moreau/core');
    expect(PRIMITIVES.filter((p) => !SUPPORTED_PRIMITIVES.has(p))).toEqual([]);
  });

  it('falls back to CPU with a one-line notice when CUDA is asked for but unavailable', async () => {
    const providers = await ortAvailableProviders();
    expect(providers).toContain('cpu');
    const notices: string[] = [];
    const b = await createOrtBackend({
      executionProvider: 'cuda',
      intraOpNumThreads: 1,
      onNotice: (m) => notices.push(m),
    });
    if (providers.includes('cuda')) {
      expect(b.device).toBe('cuda:0');
      expect(notices).toEqual([]);
    } else {
      expect(b.device).toBe('cpu');
      expect(b.executionProvider).toBe('cpu');
      expect(notices).toHaveLength(1);
      expect(notices[0]).toMatch(/^ort: CUDA requested but unavailable: .+; running on CPU$/);
      expect(notices[0]).not.toContain('\n');
    }
    await b.dispose();
  });

  it('validates options', async () => {
    await expect(createOrtBackend({ executionProvider: 'tpu' as 'cpu' })).rejects.toThrow(/'cpu' or 'cuda'/);
    await expect(createOrtBackend({ intraOpNumThreads: 0 })).rejects.toThrow(/intraOpNumThreads/);
    await expect(createOrtBackend({ graphOptimizationLevel: 'max' as 'all' })).rejects.toThrow(
      /disabled, basic/,
    );
    const b = await createOrtBackend({ intraOpNumThreads: 1, graphOptimizationLevel: 'basic' });
    expect(b).toMatchObject({ intraOpNumThreads: 1, graphOptimizationLevel: 'basic' });
    await b.dispose();
  });
});

describe('ONNX protobuf schema', () => {
  it('the embedded descriptor matches src/internal/onnx.proto (re-run scripts/gen-onnx-descriptor.mjs)', () => {
    const src = readFileSync(new URL('./internal/onnx.proto', import.meta.url), 'utf8');
    const parsed = protobuf.parse(src, { keepCase: false }).root.toJSON();
    expect(JSON.parse(ONNX_DESCRIPTOR_JSON)).toEqual(JSON.parse(JSON.stringify(parsed)));
  });

  it('round-trips a lowered model through protobufjs', () => {
    const { graph } = trace(
      (a, b) => ops.sum(ops.matmul(a, b), [1]),
      [
        { shape: [2, 3], dtype: 'float32' },
        { shape: [3, 4], dtype: 'float32' },
      ],
    );
    const { model } = lowerGraph(graph, { inputNames: ['a', 'b'], outputNames: ['y'] });
    const decoded = decodeModel(encodeModel(model));
    expect(decoded.irVersion).toBe(8);
    expect(decoded.opsetImport).toEqual([{ domain: '', version: 17 }]);
    expect(decoded.graph.node.map((n: { opType: string }) => n.opType)).toEqual([
      'MatMul',
      'ReduceSum',
      'Identity',
    ]);
    expect(decoded.graph.input.map((v: { name: string }) => v.name)).toEqual(['a', 'b']);
    expect(decoded.graph.output[0].type.tensorType.shape.dim).toEqual([{ dimValue: 2 }]);
  });
});
