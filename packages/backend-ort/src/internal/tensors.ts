/** Host tensors <-> onnxruntime tensors. */
import type * as Ort from 'onnxruntime-node';
import type { DType, HostTensor } from './core.js';
import { bfloat16ToFloat32, float32ToBfloat16, MoreauError } from './core.js';

export type OrtModule = typeof Ort;

/** The ORT element type carrying an IR dtype (bfloat16 travels as float32). */
export function ortType(dtype: DType): 'float32' | 'float16' | 'int32' | 'bool' {
  return dtype === 'bfloat16' ? 'float32' : dtype;
}

/** Wraps a host tensor for feeding (no copy except bfloat16 -> float32). */
export function toOrt(ort: OrtModule, t: HostTensor): Ort.Tensor {
  const dims = [...t.shape];
  switch (t.dtype) {
    case 'float32':
      return new ort.Tensor('float32', t.data as Float32Array, dims);
    case 'bfloat16':
      return new ort.Tensor('float32', bfloat16ToFloat32(t.data as Uint16Array), dims);
    case 'float16':
      return new ort.Tensor('float16', t.data as Uint16Array, dims);
    case 'int32':
      return new ort.Tensor('int32', t.data as Int32Array, dims);
    case 'bool':
      return new ort.Tensor('bool', t.data as Uint8Array, dims);
  }
}

/** Reads an ORT output back as a host tensor of the IR dtype `dtype`. */
export function fromOrt(t: Ort.Tensor, dtype: DType, shape: readonly number[]): HostTensor {
  const data = t.data as ArrayBufferView & { length: number };
  const out = [...shape];
  switch (dtype) {
    case 'float32':
      expectType(t, 'float32');
      return { dtype, shape: out, data: data as Float32Array };
    case 'bfloat16':
      expectType(t, 'float32');
      return { dtype, shape: out, data: float32ToBfloat16(data as Float32Array) };
    case 'float16':
      expectType(t, 'float16');
      // Uint16Array, or a Float16Array where the runtime has one: either way, the raw bits.
      return { dtype, shape: out, data: new Uint16Array(data.buffer, data.byteOffset, data.length) };
    case 'int32':
      expectType(t, 'int32');
      return { dtype, shape: out, data: data as Int32Array };
    case 'bool': {
      expectType(t, 'bool');
      const src = new Uint8Array(data.buffer, data.byteOffset, data.length);
      let clean = true;
      for (let i = 0; i < src.length; i++) {
        if (src[i]! > 1) {
          clean = false;
          break;
        }
      }
      return { dtype, shape: out, data: clean ? src : Uint8Array.from(src, (v) => (v ? 1 : 0)) };
    }
  }
}

function expectType(t: Ort.Tensor, type: string): void {
  if (t.type !== type)
    throw new MoreauError(`ort: expected a ${type} output, onnxruntime returned ${t.type}`);
}

/** An independent copy of a host tensor's data (for repeated outputs and downloads). */
export function copyHost(t: HostTensor): HostTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() };
}
