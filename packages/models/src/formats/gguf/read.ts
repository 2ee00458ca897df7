/**
 * GGUF (v2 / v3) reader: header, metadata and tensor infos, tensors read on demand.
 *
 * File layout (little-endian): magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
 * metadata KVs (u64-length string key, u32 value type, value), tensor infos (name, u32 n_dims,
 * u64 dims[n_dims] innermost first, u32 ggml type, u64 offset relative to the data section), padding
 * to general.alignment (default 32), then the data section. Only F32 / F16 / BF16 (and I32) tensors
 * can be read; quantized types are rejected naming the type and the tensor.
 */
import { type DType, type FloatDType, type HostTensor, sizeOf } from '@moreau/core';
import { FormatError } from '../errors.js';
import { assertLittleEndianHost, ChunkedReader, decodeUtf8, openForRead } from '../io.js';
import { type FileStamp, stampOf } from '../stored.js';
import { tensorFileReader } from '../tensor.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
const VALUE_TYPE_NAMES = Object.fromEntries(Object.entries(GgufValueType).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

/** ggml tensor types: id -> [name, block size (elements), bytes per block]. */
export const GGML_TYPES: Readonly<Record<number, readonly [string, number, number]>> = {
  0: ['F32', 1, 4],
  1: ['F16', 1, 2],
  2: ['Q4_0', 32, 18],
  3: ['Q4_1', 32, 20],
  6: ['Q5_0', 32, 22],
  7: ['Q5_1', 32, 24],
  8: ['Q8_0', 32, 34],
  9: ['Q8_1', 32, 36],
  10: ['Q2_K', 256, 84],
  11: ['Q3_K', 256, 110],
  12: ['Q4_K', 256, 144],
  13: ['Q5_K', 256, 176],
  14: ['Q6_K', 256, 210],
  15: ['Q8_K', 256, 292],
  16: ['IQ2_XXS', 256, 66],
  17: ['IQ2_XS', 256, 74],
  18: ['IQ3_XXS', 256, 98],
  19: ['IQ1_S', 256, 50],
  20: ['IQ4_NL', 32, 18],
  21: ['IQ3_S', 256, 110],
  22: ['IQ2_S', 256, 82],
  23: ['IQ4_XS', 256, 136],
  24: ['I8', 1, 1],
  25: ['I16', 1, 2],
  26: ['I32', 1, 4],
  27: ['I64', 1, 8],
  28: ['F64', 1, 8],
  29: ['IQ1_M', 256, 56],
  30: ['BF16', 1, 2],
  34: ['TQ1_0', 256, 54],
  35: ['TQ2_0', 256, 66],
  39: ['MXFP4', 32, 17],
};

/** ggml type ids this reader can turn into host tensors. */
export const READABLE: Record<number, DType> = { 0: 'float32', 1: 'float16', 30: 'bfloat16', 26: 'int32' };

export function ggmlTypeName(type: number): string {
  return GGML_TYPES[type]?.[0] ?? `unknown type ${type}`;
}

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml type id and name ("F16", "Q4_0", ...). */
  type: number;
  typeName: string;
  /** Dims as stored: innermost (ne0, columns) first. */
  dims: number[];
  /** Row-major shape (dims reversed). */
  shape: number[];
  /** Absolute byte offset in the file, and byte size. */
  offset: number;
  byteSize: number;
}

export interface GgufFile {
  readonly file: string;
  readonly version: number;
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Value type of each metadata key (arrays: "ARRAY<ITEM>"). */
  readonly metadataTypes: ReadonlyMap<string, string>;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  /** Size and modification time of the file when it was opened. */
  readonly stamp: FileStamp;
  /** Read one tensor (row-major shape). Quantized types are an error naming the type and tensor. */
  read(name: string, options?: { dtype?: FloatDType }): Promise<HostTensor>;
  close(): Promise<void>;
}

/** Longest metadata string accepted (chat templates are kilobytes; 64 MiB is no real file's). */
export const GGUF_MAX_STRING = 1 << 26;
/** Most entries of one metadata array (vocabularies are ~10^5; 16 Mi is no real file's). */
export const GGUF_MAX_ARRAY = 1 << 24;

async function readString(r: ChunkedReader, what: string): Promise<string> {
  const len = await r.u64Number(`${what} length`);
  if (r.pos + len > r.fileSize) {
    throw new FormatError(
      r.file,
      `truncated: ${what} at byte ${r.pos} has length ${len} but the file has ${r.fileSize} bytes`,
    );
  }
  if (len > GGUF_MAX_STRING) {
    throw new FormatError(
      r.file,
      `${what} at byte ${r.pos - 8} has length ${len}, more than the ${GGUF_MAX_STRING}-byte limit`,
    );
  }
  return decodeUtf8(await r.bytes(len, what), r.file, what);
}

const MIN_SIZE: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  8: 8,
  9: 12,
  10: 8,
  11: 8,
  12: 8,
};

/** Element size and little-endian reader of the fixed-size value types (arrays are read in bulk). */
const FIXED_READ: Record<number, readonly [number, (dv: DataView, o: number) => number | bigint]> = {
  0: [1, (dv, o) => dv.getUint8(o)],
  1: [1, (dv, o) => dv.getInt8(o)],
  2: [2, (dv, o) => dv.getUint16(o, true)],
  3: [2, (dv, o) => dv.getInt16(o, true)],
  4: [4, (dv, o) => dv.getUint32(o, true)],
  5: [4, (dv, o) => dv.getInt32(o, true)],
  6: [4, (dv, o) => dv.getFloat32(o, true)],
  7: [1, (dv, o) => dv.getUint8(o)],
  10: [8, (dv, o) => dv.getBigUint64(o, true)],
  11: [8, (dv, o) => dv.getBigInt64(o, true)],
  12: [8, (dv, o) => dv.getFloat64(o, true)],
};

async function readValue(
  r: ChunkedReader,
  type: number,
  what: string,
): Promise<{ value: GgufValue; typeName: string }> {
  switch (type) {
    case 0:
      return { value: await r.u8(what), typeName: 'UINT8' };
    case 1:
      return { value: await r.i8(what), typeName: 'INT8' };
    case 2:
      return { value: await r.u16(what), typeName: 'UINT16' };
    case 3:
      return { value: await r.i16(what), typeName: 'INT16' };
    case 4:
      return { value: await r.u32(what), typeName: 'UINT32' };
    case 5:
      return { value: await r.i32(what), typeName: 'INT32' };
    case 6:
      return { value: await r.f32(what), typeName: 'FLOAT32' };
    case 7: {
      const b = await r.u8(what);
      if (b > 1) throw new FormatError(r.file, `${what}: BOOL value ${b} at byte ${r.pos - 1} is not 0 or 1`);
      return { value: b === 1, typeName: 'BOOL' };
    }
    case 8:
      return { value: await readString(r, what), typeName: 'STRING' };
    case 9: {
      const itemType = await r.u32(`${what} array item type`);
      if (!(itemType in MIN_SIZE)) {
        throw new FormatError(r.file, `${what}: unknown array item type ${itemType} at byte ${r.pos - 4}`);
      }
      const count = await r.u64Number(`${what} array length`);
      if (count > GGUF_MAX_ARRAY) {
        throw new FormatError(
          r.file,
          `${what} is an array of ${count} entries, more than the ${GGUF_MAX_ARRAY}-entry limit (corrupt length at byte ${r.pos - 8}?)`,
        );
      }
      if (count * MIN_SIZE[itemType]! > r.fileSize - r.pos) {
        throw new FormatError(
          r.file,
          `truncated: ${what} is an array of ${count} ${VALUE_TYPE_NAMES[itemType]} but only ${r.fileSize - r.pos} bytes remain`,
        );
      }
      const fixed = FIXED_READ[itemType];
      if (fixed) {
        // Fixed-size numbers: one read of the whole array, decoded in a plain loop.
        const [size, get] = fixed;
        const bytes = await r.bytes(count * size, what);
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const values: GgufValue[] = new Array(count);
        for (let k = 0; k < count; k++) values[k] = get(dv, k * size);
        if (itemType === 7 && values.some((b) => b !== 0 && b !== 1)) {
          throw new FormatError(r.file, `${what}: a BOOL array holds a value that is not 0 or 1`);
        }
        return {
          value: itemType === 7 ? values.map((b) => b === 1) : values,
          typeName: `ARRAY<${VALUE_TYPE_NAMES[itemType]}>`,
        };
      }
      const values: GgufValue[] = new Array(count);
      let inner = VALUE_TYPE_NAMES[itemType]!;
      for (let k = 0; k < count; k++) {
        const v = await readValue(r, itemType, `${what}[${k}]`);
        values[k] = v.value;
        inner = v.typeName;
      }
      return { value: values, typeName: `ARRAY<${inner}>` };
    }
    case 10:
      return { value: await r.u64(what), typeName: 'UINT64' };
    case 11:
      return { value: await r.i64(what), typeName: 'INT64' };
    case 12:
      return { value: await r.f64(what), typeName: 'FLOAT64' };
    default:
      throw new FormatError(r.file, `${what}: unknown GGUF value type ${type} at byte ${r.pos - 4}`);
  }
}

/** Open a GGUF file: parse and validate metadata and tensor infos; tensors are read on demand. */
export async function openGguf(file: string): Promise<GgufFile> {
  assertLittleEndianHost(file);
  const { fh, size } = await openForRead(file);
  try {
    const r = new ChunkedReader(fh, file, size);
    if (size < 4) throw new FormatError(file, `truncated: ${size} bytes, not a GGUF file`);
    const magic = await r.u32('magic');
    if (magic !== GGUF_MAGIC) {
      const got = Buffer.from(new Uint32Array([magic]).buffer).toString('latin1');
      throw new FormatError(
        file,
        `bad magic ${JSON.stringify(got)} (0x${magic.toString(16)}); expected "GGUF" — not a GGUF file`,
      );
    }
    const version = await r.u32('version');
    if (version !== 2 && version !== 3) {
      throw new FormatError(file, `GGUF version ${version} is not supported (only 2 and 3)`);
    }
    const tensorCount = await r.u64Number('tensor_count');
    const kvCount = await r.u64Number('metadata_kv_count');
    // Every KV takes at least 13 bytes (key length, type, a 1-byte value), every tensor info 24
    // (name length, n_dims, type, offset): counts the file cannot hold fail before any loop.
    if (kvCount * 13 + tensorCount * 24 > size - r.pos) {
      throw new FormatError(
        file,
        `truncated or corrupt: tensor_count ${tensorCount} and metadata_kv_count ${kvCount} need at least ` +
          `${kvCount * 13 + tensorCount * 24} bytes of header but the file has ${size - r.pos} bytes after the counts`,
        { field: tensorCount * 24 > size - r.pos ? 'tensor_count' : 'metadata_kv_count' },
      );
    }
    const metadata = new Map<string, GgufValue>();
    const metadataTypes = new Map<string, string>();
    for (let k = 0; k < kvCount; k++) {
      const key = await readString(r, `metadata key #${k}`);
      const type = await r.u32(`metadata ${key} type`);
      const { value, typeName } = await readValue(r, type, `metadata ${key}`);
      if (metadata.has(key)) throw new FormatError(file, `metadata key ${key} appears twice`);
      metadata.set(key, value);
      metadataTypes.set(key, typeName);
    }
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    if (metadata.has('general.alignment')) {
      const a = metadata.get('general.alignment');
      if (typeof a !== 'number' || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
        throw new FormatError(file, `general.alignment must be a positive power of two, got ${String(a)}`);
      }
      alignment = a;
    }
    const infos: GgufTensorInfo[] = [];
    for (let k = 0; k < tensorCount; k++) {
      const name = await readString(r, `tensor info #${k} name`);
      const nDims = await r.u32(`tensor ${name} n_dims`);
      if (nDims > 4) throw new FormatError(file, `tensor ${name} has ${nDims} dims; GGUF allows at most 4`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(await r.u64Number(`tensor ${name} dim ${d}`));
      const type = await r.u32(`tensor ${name} type`);
      const rel = await r.u64Number(`tensor ${name} offset`);
      if (rel % alignment !== 0) {
        throw new FormatError(
          file,
          `tensor ${name} offset ${rel} is not a multiple of the alignment ${alignment}`,
        );
      }
      const t = GGML_TYPES[type];
      if (!t) throw new FormatError(file, `tensor ${name} has unknown ggml type ${type}`);
      const n = sizeOf(dims);
      if (dims.length > 0 && dims[0]! % t[1] !== 0) {
        throw new FormatError(
          file,
          `tensor ${name}: ${t[0]} needs ne0 (${dims[0]}) to be a multiple of its block size ${t[1]}`,
        );
      }
      const byteSize = (n / t[1]) * t[2];
      if (!Number.isSafeInteger(byteSize) || byteSize > size) {
        throw new FormatError(
          file,
          `tensor ${name} (${t[0]} [${dims.join(', ')}]) would need ${byteSize} bytes; the file has ${size}`,
        );
      }
      infos.push({
        name,
        type,
        typeName: ggmlTypeName(type),
        dims,
        shape: dims.slice().reverse(),
        offset: rel,
        byteSize,
      });
    }
    const dataOffset = tensorCount === 0 ? r.pos : Math.ceil(r.pos / alignment) * alignment;
    // The bytes between the last tensor info and the data section are padding, written as zeros: a
    // tensor_count that is too low leaves the rest of the infos here.
    if (dataOffset > r.pos) {
      const pad = await r.bytes(dataOffset - r.pos, 'padding before the data section');
      if (pad.some((b) => b !== 0)) {
        throw new FormatError(
          file,
          `the ${pad.length} bytes of padding after the tensor infos (at byte ${dataOffset - pad.length}) are not zero: ` +
            `tensor_count ${tensorCount} or metadata_kv_count ${kvCount} is wrong, or the header is corrupt`,
          { field: 'tensor_count' },
        );
      }
    }
    // The data section is tiled as llama.cpp requires: tensors in info order, each starting at the
    // previous one's end rounded up to the alignment.
    const tensors = new Map<string, GgufTensorInfo>();
    let expected = 0;
    for (const t of infos) {
      if (tensors.has(t.name)) throw new FormatError(file, `tensor ${t.name} is listed twice`);
      if (t.offset !== expected) {
        throw new FormatError(
          file,
          `tensor ${t.name} has data offset ${t.offset}, expected ${expected} (tensors are laid out in order, ` +
            `each aligned to ${alignment}): overlapping or misplaced tensor data`,
        );
      }
      expected += Math.ceil(t.byteSize! / alignment) * alignment;
      t.offset += dataOffset;
      if (t.offset + t.byteSize! > size) {
        throw new FormatError(
          file,
          `truncated: tensor ${t.name} (${t.typeName} [${t.dims.join(', ')}]) needs bytes ${t.offset}..${t.offset + t.byteSize!} ` +
            `but the file has ${size} bytes`,
        );
      }
      tensors.set(t.name, t);
    }
    if (infos.length > 0 && size > dataOffset + expected) {
      throw new FormatError(
        file,
        `has ${size - dataOffset - expected} bytes after the last tensor's data (the ${tensorCount} tensors end at byte ` +
          `${dataOffset + expected}): tensor_count is too low or the file is corrupt`,
        { field: 'tensor_count' },
      );
    }
    return {
      file,
      version,
      alignment,
      dataOffset,
      metadata,
      metadataTypes,
      tensors,
      stamp: await stampOf(fh),
      ...tensorFileReader(fh, file, tensors, (name, info) => {
        const dtype = READABLE[info.type];
        if (dtype === undefined) {
          throw new FormatError(
            file,
            `tensor ${name} has ggml type ${info.typeName}; only F32, F16, BF16 and I32 can be read ` +
              '(quantized GGUF files are not supported: use an F16/BF16/F32 export)',
          );
        }
        return { dtype, shape: info.shape, offset: info.offset, byteLength: info.byteSize };
      }),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Read only the metadata and tensor infos of a GGUF file. */
export async function readGgufInfo(
  file: string,
): Promise<
  Pick<GgufFile, 'file' | 'version' | 'alignment' | 'dataOffset' | 'metadata' | 'metadataTypes' | 'tensors'>
> {
  const g = await openGguf(file);
  await g.close();
  const { version, alignment, dataOffset, metadata, metadataTypes, tensors } = g;
  return { file, version, alignment, dataOffset, metadata, metadataTypes, tensors };
}

/** A numeric metadata value (u64 / i64 narrowed to a safe integer), or undefined when absent. */
export function metaNumber(g: Pick<GgufFile, 'file' | 'metadata'>, key: string): number | undefined {
  const v = g.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new FormatError(g.file, `metadata ${key} = ${v} is too large`);
    return Number(v);
  }
  if (typeof v !== 'number')
    throw new FormatError(g.file, `metadata ${key} must be a number, got ${describeValue(v)}`);
  return v;
}

/** A metadata value for error messages. */
export function describeValue(v: GgufValue): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}
