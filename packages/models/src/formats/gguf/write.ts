/**
 * GGUF writer (unquantized tensors), used for exports and to build test files: metadata in the given
 * order with explicit value types, tensors laid out in order, each aligned.
 */
import { type DType, type HostTensor, tensorBytes, throwIfAborted } from '@moreau/core';
import { FormatError } from '../errors.js';
import { assertLittleEndianHost, writeAll, writeFileAtomic } from '../io.js';
import { dataBytes } from '../tensor.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValueType } from './read.js';

const WRITABLE: Record<DType, number | undefined> = {
  float32: 0,
  float16: 1,
  bfloat16: 30,
  int32: 26,
  bool: undefined,
};

/** A metadata entry for the writer: the value type is explicit, as GGUF needs it. */
export type GgufWriteValue =
  | {
      type: 'UINT8' | 'INT8' | 'UINT16' | 'INT16' | 'UINT32' | 'INT32' | 'FLOAT32' | 'FLOAT64';
      value: number;
    }
  | { type: 'UINT64' | 'INT64'; value: bigint | number }
  | { type: 'BOOL'; value: boolean }
  | { type: 'STRING'; value: string }
  | {
      type: 'ARRAY';
      itemType: Exclude<keyof typeof GgufValueType, 'ARRAY'>;
      value: readonly (number | bigint | boolean | string)[];
    };

export interface GgufWriteTensor {
  name: string;
  /** Row-major (HF-style) tensor; written with reversed dims. */
  tensor?: HostTensor;
  /** Or raw bytes with an explicit ggml type and GGUF dims (innermost first), e.g. to build test files. */
  raw?: { type: number; dims: number[]; data: Uint8Array };
}

export interface GgufWriteOptions {
  version?: 2 | 3;
  /** Checked between tensors: an abort stops the write, leaving nothing behind. */
  signal?: AbortSignal;
  /** general.alignment is written when it differs from 32. */
  alignment?: number;
}

class ByteSink {
  private chunks: Uint8Array[] = [];
  length = 0;
  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  num(
    kind: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64' | 'u64' | 'i64',
    v: number | bigint,
  ): void {
    const size = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, f64: 8, u64: 8, i64: 8 }[kind];
    const b = new Uint8Array(size);
    const dv = new DataView(b.buffer);
    switch (kind) {
      case 'u8':
        dv.setUint8(0, Number(v));
        break;
      case 'i8':
        dv.setInt8(0, Number(v));
        break;
      case 'u16':
        dv.setUint16(0, Number(v), true);
        break;
      case 'i16':
        dv.setInt16(0, Number(v), true);
        break;
      case 'u32':
        dv.setUint32(0, Number(v), true);
        break;
      case 'i32':
        dv.setInt32(0, Number(v), true);
        break;
      case 'f32':
        dv.setFloat32(0, Number(v), true);
        break;
      case 'f64':
        dv.setFloat64(0, Number(v), true);
        break;
      case 'u64':
        dv.setBigUint64(0, BigInt(v), true);
        break;
      case 'i64':
        dv.setBigInt64(0, BigInt(v), true);
        break;
    }
    this.push(b);
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.num('u64', b.length);
    this.push(b);
  }
  bytes(b: Uint8Array): void {
    this.push(b);
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const SCALAR_KIND = {
  UINT8: 'u8',
  INT8: 'i8',
  UINT16: 'u16',
  INT16: 'i16',
  UINT32: 'u32',
  INT32: 'i32',
  FLOAT32: 'f32',
  FLOAT64: 'f64',
  UINT64: 'u64',
  INT64: 'i64',
} as const;

function writeScalar(
  s: ByteSink,
  type: Exclude<keyof typeof GgufValueType, 'ARRAY'>,
  v: number | bigint | boolean | string,
): void {
  if (type === 'STRING') s.str(String(v));
  else if (type === 'BOOL') s.num('u8', v ? 1 : 0);
  else s.num(SCALAR_KIND[type], v as number | bigint);
}

/**
 * Write a GGUF file atomically. Metadata is written in the given order; tensors are laid out in
 * order, each aligned (the last one padded too), and their data is read one tensor at a time as it
 * is written. Host tensors are written as F32 / F16 / BF16 / I32 with dims reversed.
 */
export async function writeGguf(
  file: string,
  metadata: ReadonlyArray<readonly [string, GgufWriteValue]>,
  tensors: readonly GgufWriteTensor[],
  options: GgufWriteOptions = {},
): Promise<void> {
  assertLittleEndianHost(file);
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const kvs = [...metadata];
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !kvs.some(([k]) => k === 'general.alignment')) {
    kvs.push(['general.alignment', { type: 'UINT32', value: alignment }]);
  }
  // Tensors' data is read when it is written, one tensor at a time (lazy tensors stay unread until then).
  const parts = tensors.map((t) => {
    if (t.raw) {
      const raw = t.raw;
      return { name: t.name, type: raw.type, dims: raw.dims, length: raw.data.length, data: () => raw.data };
    }
    const tensor = t.tensor;
    if (!tensor) throw new FormatError(file, `tensor ${t.name} has neither tensor nor raw data`);
    const type = WRITABLE[tensor.dtype];
    if (type === undefined)
      throw new FormatError(file, `tensor ${t.name}: dtype ${tensor.dtype} cannot be written to GGUF`);
    return {
      name: t.name,
      type,
      dims: [...tensor.shape].reverse(),
      length: tensorBytes(tensor),
      data: () => dataBytes(tensor.data),
    };
  });
  const h = new ByteSink();
  h.num('u32', GGUF_MAGIC);
  h.num('u32', options.version ?? 3);
  h.num('u64', parts.length);
  h.num('u64', kvs.length);
  for (const [key, v] of kvs) {
    h.str(key);
    h.num('u32', GgufValueType[v.type]);
    if (v.type === 'ARRAY') {
      h.num('u32', GgufValueType[v.itemType]);
      h.num('u64', v.value.length);
      for (const x of v.value) writeScalar(h, v.itemType, x);
    } else {
      writeScalar(h, v.type, v.value);
    }
  }
  let off = 0;
  const offsets: number[] = [];
  for (const p of parts) {
    h.str(p.name);
    h.num('u32', p.dims.length);
    for (const d of p.dims) h.num('u64', d);
    h.num('u32', p.type);
    h.num('u64', off);
    offsets.push(off);
    off = Math.ceil((off + p.length) / alignment) * alignment;
  }
  const headerLen = parts.length ? Math.ceil(h.length / alignment) * alignment : h.length;
  h.bytes(new Uint8Array(headerLen - h.length));
  const header = h.concat();
  await writeFileAtomic(file, async (fh) => {
    await writeAll(fh, header);
    let pos = 0;
    for (let k = 0; k < parts.length; k++) {
      throwIfAborted(options.signal);
      const p = parts[k]!;
      if (offsets[k]! > pos) await writeAll(fh, new Uint8Array(offsets[k]! - pos));
      const data = p.data();
      if (data.length !== p.length) {
        throw new FormatError(
          file,
          `tensor ${p.name}: its data has ${data.length} bytes, its shape needs ${p.length}`,
        );
      }
      await writeAll(fh, data);
      pos = offsets[k]! + p.length;
    }
    // The last tensor is padded too: llama.cpp reads the data section as whole aligned tensors.
    if (off > pos) await writeAll(fh, new Uint8Array(off - pos));
  });
}
