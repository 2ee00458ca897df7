/**
 * safetensors reader and writer: single files and sharded checkpoints (model.safetensors.index.json).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}), then the data
 * section; offsets are relative to the data section and must tile it exactly (contiguous, no overlap).
 *
 * Reading opens the file once and reads each tensor with positional reads into its own buffer, so a
 * model never needs the whole file (or twice its size) in memory.
 */
import { basename, dirname, join } from 'node:path';
import { bytesPerElement, type DType, type FloatDType, type HostTensor, isFloat, sizeOf } from '@moreau/core';
import { describeError, FormatError } from './errors.js';
import {
  assertLittleEndianHost,
  isJsonObject,
  openForRead,
  readExactly,
  readJsonFile,
  writeAll,
  writeFileAtomic,
} from './io.js';
import { castFloatTensor, dataBytes, hostTensorProblem, tensorFileReader } from './tensor.js';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'BOOL';

const TO_HOST: Record<SafetensorsDType, DType> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I32: 'int32',
  BOOL: 'bool',
};
const FROM_HOST: Record<DType, SafetensorsDType> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int32: 'I32',
  bool: 'BOOL',
};

/** Largest header the reader accepts (the reference implementation's limit). */
export const MAX_SAFETENSORS_HEADER = 100_000_000;

export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsReadOptions {
  /** Convert floating-point tensors to this dtype while reading (exact RNE). Default: keep. */
  dtype?: FloatDType;
}

/** An open safetensors file: the parsed header, and tensors read on demand. */
export interface SafetensorsFile {
  readonly file: string;
  readonly size: number;
  readonly metadata: Record<string, string>;
  /** Tensor infos in header order. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  read(name: string, options?: SafetensorsReadOptions): Promise<HostTensor>;
  close(): Promise<void>;
}

/** Parse and validate a header against the file size. Exported for tests and tools. */
export function parseSafetensorsHeader(
  file: string,
  headerBytes: Uint8Array,
  fileSize: number,
): { metadata: Record<string, string>; tensors: Map<string, SafetensorsTensorInfo> } {
  const fail = (detail: string): never => {
    throw new FormatError(file, detail);
  };
  const dataStart = 8 + headerBytes.length;
  const dataLen = fileSize - dataStart;
  if (headerBytes[0] !== 0x7b) fail('header does not start with "{" (not a safetensors file?)');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    return fail(`header is not valid JSON (${describeError(e)})`);
  }
  if (!isJsonObject(json)) return fail('header is not a JSON object');
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isJsonObject(entry)) fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (!isJsonObject(entry)) fail(`tensor ${name}: header entry must be an object`);
    const e = entry as Record<string, unknown>;
    const dt = e.dtype;
    if (typeof dt !== 'string') return fail(`tensor ${name}: dtype must be a string`);
    if (!(dt in TO_HOST)) {
      fail(`tensor ${name} has dtype ${dt}; supported: ${Object.keys(TO_HOST).join(', ')}`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      return fail(
        `tensor ${name}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`,
      );
    }
    const off = e.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      !off.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      off[0] > off[1]
    ) {
      return fail(
        `tensor ${name}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(off)}`,
      );
    }
    const [b, en] = off as [number, number];
    const sdt = dt as SafetensorsDType;
    const need = sizeOf(shape as number[]) * bytesPerElement(TO_HOST[sdt]);
    if (need !== en - b) {
      fail(
        `tensor ${name}: shape [${shape.join(', ')}] with dtype ${sdt} needs ${need} bytes ` +
          `but data_offsets [${b}, ${en}] span ${en - b} bytes`,
      );
    }
    if (en > dataLen) {
      fail(
        `tensor ${name}: data_offsets [${b}, ${en}] go past the end of the data section ` +
          `(${Math.max(0, dataLen)} bytes; file is ${fileSize} bytes, expected at least ${dataStart + en}) — truncated?`,
      );
    }
    tensors.set(name, {
      name,
      dtype: sdt,
      shape: shape as number[],
      begin: dataStart + b,
      end: dataStart + en,
    });
  }
  // The offsets must tile the data section: sorted by begin, each starts where the previous ended.
  const sorted = [...tensors.values()].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let expected = dataStart;
  let prev: string | undefined;
  for (const t of sorted) {
    if (t.begin < expected) {
      fail(
        `tensor ${t.name} overlaps tensor ${prev} (data_offsets begin ${t.begin - dataStart} < ${expected - dataStart})`,
      );
    }
    if (t.begin > expected) {
      fail(
        `gap in the data section: tensor ${t.name} starts at ${t.begin - dataStart} but the previous ` +
          `${prev ? `tensor ${prev}` : 'start'} ends at ${expected - dataStart}`,
      );
    }
    expected = t.end;
    prev = t.name;
  }
  if (expected !== fileSize) {
    fail(
      `the tensors cover ${expected - dataStart} bytes of data but the file has ${dataLen} bytes after the header ` +
        `(${fileSize - expected} trailing bytes)`,
    );
  }
  return { metadata, tensors };
}

/** Open a safetensors file and validate its header; tensors are read on demand. Close it when done. */
export async function openSafetensors(file: string): Promise<SafetensorsFile> {
  assertLittleEndianHost(file);
  const { fh, size } = await openForRead(file);
  try {
    if (size < 8)
      throw new FormatError(file, `truncated: ${size} bytes, a safetensors file needs at least 8`);
    const lenBuf = new Uint8Array(8);
    await readExactly(fh, file, lenBuf, 0, 'header length');
    const n = new DataView(lenBuf.buffer).getBigUint64(0, true);
    if (n === 0n) throw new FormatError(file, 'header length is 0');
    if (n > BigInt(size - 8)) {
      throw new FormatError(
        file,
        `header length ${n} is larger than the rest of the file (${size - 8} bytes)`,
      );
    }
    if (n > BigInt(MAX_SAFETENSORS_HEADER)) {
      throw new FormatError(file, `header length ${n} exceeds the ${MAX_SAFETENSORS_HEADER}-byte limit`);
    }
    const header = new Uint8Array(Number(n));
    await readExactly(fh, file, header, 8, 'header');
    const { metadata, tensors } = parseSafetensorsHeader(file, header, size);
    return {
      file,
      size,
      metadata,
      tensors,
      ...tensorFileReader(fh, file, tensors, (_name, info) => ({
        dtype: TO_HOST[info.dtype],
        shape: info.shape,
        offset: info.begin,
        byteLength: info.end - info.begin,
      })),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

export interface SafetensorsContents {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
  /** Storage dtype of each tensor as in the file. */
  dtypes: Map<string, SafetensorsDType>;
}

/** Read every tensor of one safetensors file. */
export async function readSafetensors(
  file: string,
  options: SafetensorsReadOptions = {},
): Promise<SafetensorsContents> {
  const st = await openSafetensors(file);
  try {
    const tensors = new Map<string, HostTensor>();
    const dtypes = new Map<string, SafetensorsDType>();
    for (const [name, info] of st.tensors) {
      tensors.set(name, await st.read(name, options));
      dtypes.set(name, info.dtype);
    }
    return { tensors, metadata: st.metadata, dtypes };
  } finally {
    await st.close();
  }
}

export interface SafetensorsIndex {
  /** Tensor name -> shard file name (relative to the index's directory). */
  weightMap: Map<string, string>;
  metadata: Record<string, unknown>;
}

/** Read and validate a model.safetensors.index.json. */
export async function readSafetensorsIndex(indexFile: string): Promise<SafetensorsIndex> {
  const { json } = await readJsonFile(indexFile);
  if (!isJsonObject(json)) throw new FormatError(indexFile, 'expected a JSON object');
  const wm = json.weight_map;
  if (!isJsonObject(wm))
    throw new FormatError(indexFile, 'weight_map must be an object of tensor name -> shard file');
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm)) {
    if (
      typeof shard !== 'string' ||
      shard === '' ||
      shard !== basename(shard) ||
      shard === '..' ||
      shard === '.'
    ) {
      throw new FormatError(
        indexFile,
        `weight_map.${name} must be a file name in the same directory, got ${JSON.stringify(shard)}`,
      );
    }
    weightMap.set(name, shard);
  }
  const metadata = isJsonObject(json.metadata) ? json.metadata : {};
  return { weightMap, metadata };
}

/** Read a sharded checkpoint through its index file. Every indexed tensor must be in its shard. */
export async function readShardedSafetensors(
  indexFile: string,
  options: SafetensorsReadOptions = {},
): Promise<SafetensorsContents> {
  const index = await readSafetensorsIndex(indexFile);
  const dir = dirname(indexFile);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of index.weightMap) {
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  const tensors = new Map<string, HostTensor>();
  const dtypes = new Map<string, SafetensorsDType>();
  let metadata: Record<string, string> = {};
  for (const [shard, names] of byShard) {
    const path = join(dir, shard);
    const st = await openSafetensors(path);
    try {
      metadata = { ...metadata, ...st.metadata };
      for (const name of names) {
        const info = st.tensors.get(name);
        if (!info)
          throw new FormatError(
            indexFile,
            `weight_map says tensor ${name} is in ${shard}, but it is not there`,
          );
        tensors.set(name, await st.read(name, options));
        dtypes.set(name, info.dtype);
      }
      for (const name of st.tensors.keys()) {
        if (index.weightMap.get(name) !== shard) {
          throw new FormatError(
            path,
            `tensor ${name} is not listed for this shard in ${basename(indexFile)}`,
          );
        }
      }
    } finally {
      await st.close();
    }
  }
  const total = index.metadata.total_size;
  if (typeof total === 'number') {
    let sum = 0;
    for (const t of tensors.values()) sum += t.data.byteLength;
    // total_size counts stored bytes; compare before any dtype conversion.
    if (!options.dtype && sum !== total) {
      throw new FormatError(
        indexFile,
        `metadata.total_size is ${total} but the shards hold ${sum} bytes of tensors`,
      );
    }
  }
  return { tensors, metadata, dtypes };
}

export interface SafetensorsWriteOptions {
  /** Store floating-point tensors as this dtype (converted on the host, RNE). Default: as given. */
  dtype?: FloatDType;
  /** String metadata; format: "pt" is always included. */
  metadata?: Record<string, string>;
}

type TensorSource = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

function entriesOf(tensors: TensorSource): [string, HostTensor][] {
  return tensors instanceof Map
    ? [...tensors.entries()]
    : Object.entries(tensors as Record<string, HostTensor>);
}

function storedDType(t: HostTensor, dtype: FloatDType | undefined): DType {
  return dtype && isFloat(t.dtype) ? dtype : t.dtype;
}

interface Planned {
  name: string;
  tensor: HostTensor;
  dtype: DType;
  begin: number;
  end: number;
}

function planLayout(file: string, entries: [string, HostTensor][], dtype: FloatDType | undefined): Planned[] {
  for (const [name, t] of entries) {
    if (name === '__metadata__' || name === '')
      throw new FormatError(file, `invalid tensor name ${JSON.stringify(name)}`);
    const p = hostTensorProblem(t);
    if (p) throw new FormatError(file, `cannot write tensor ${name}: ${p}`);
  }
  // Wider elements first (stable), so every tensor starts at a multiple of its element size.
  const order = entries
    .map((e, i) => ({ e, i, w: bytesPerElement(storedDType(e[1], dtype)) }))
    .sort((a, b) => b.w - a.w || a.i - b.i);
  let off = 0;
  return order.map(({ e: [name, tensor] }) => {
    const dt = storedDType(tensor, dtype);
    const len = sizeOf(tensor.shape) * bytesPerElement(dt);
    const p = { name, tensor, dtype: dt, begin: off, end: off + len };
    off += len;
    return p;
  });
}

function encodeHeader(planned: Planned[], metadata: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { ...metadata, format: 'pt' } };
  for (const p of planned) {
    header[p.name] = {
      dtype: FROM_HOST[p.dtype],
      shape: [...p.tensor.shape],
      data_offsets: [p.begin, p.end],
    };
  }
  let json = JSON.stringify(header);
  const raw = new TextEncoder().encode(json);
  const pad = (8 - (raw.length % 8)) % 8; // data section starts 8-byte aligned
  json += ' '.repeat(pad);
  const bytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + bytes.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(bytes.length), true);
  out.set(bytes, 8);
  return out;
}

/** Stored size in bytes of a set of tensors written with `dtype`. */
export function safetensorsDataSize(tensors: TensorSource, dtype?: FloatDType): number {
  let n = 0;
  for (const [, t] of entriesOf(tensors)) n += sizeOf(t.shape) * bytesPerElement(storedDType(t, dtype));
  return n;
}

/**
 * Write one safetensors file atomically (temporary file in the same directory, then rename).
 * Tensors are converted one at a time, so memory overhead is at most one tensor.
 */
export async function writeSafetensors(
  file: string,
  tensors: TensorSource,
  options: SafetensorsWriteOptions = {},
): Promise<void> {
  assertLittleEndianHost(file);
  const planned = planLayout(file, entriesOf(tensors), options.dtype);
  const header = encodeHeader(planned, options.metadata ?? {});
  await writeFileAtomic(file, async (fh) => {
    await writeAll(fh, header);
    for (const p of planned) await writeAll(fh, dataBytes(castFloatTensor(p.tensor, options.dtype).data));
  });
}

export interface ShardedWriteOptions extends SafetensorsWriteOptions {
  /** Largest shard in bytes of tensor data (a single larger tensor gets a shard of its own). Default 5e9. */
  maxShardBytes?: number;
  /** File name stem: `${baseName}.safetensors` or `${baseName}-00001-of-0000N.safetensors`. Default "model". */
  baseName?: string;
}

/**
 * Write tensors into `dir` as `model.safetensors`, or as shards plus `model.safetensors.index.json`
 * when they exceed maxShardBytes. Tensors keep the given order across shards. Returns the file
 * names written.
 */
export async function writeSafetensorsDir(
  dir: string,
  tensors: TensorSource,
  options: ShardedWriteOptions = {},
): Promise<string[]> {
  const max = options.maxShardBytes ?? 5e9;
  const base = options.baseName ?? 'model';
  const entries = entriesOf(tensors);
  const total = safetensorsDataSize(tensors, options.dtype);
  if (total <= max) {
    const name = `${base}.safetensors`;
    await writeSafetensors(join(dir, name), entries.length ? new Map(entries) : new Map(), options);
    return [name];
  }
  const shards: [string, HostTensor][][] = [];
  let cur: [string, HostTensor][] = [];
  let curBytes = 0;
  for (const e of entries) {
    const n = sizeOf(e[1].shape) * bytesPerElement(storedDType(e[1], options.dtype));
    if (cur.length > 0 && curBytes + n > max) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(e);
    curBytes += n;
  }
  if (cur.length > 0) shards.push(cur);
  const pad = (i: number): string => String(i).padStart(5, '0');
  const names = shards.map((_, i) => `${base}-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < shards.length; i++) {
    await writeSafetensors(join(dir, names[i]!), new Map(shards[i]!), options);
    for (const [name] of shards[i]!) weightMap[name] = names[i]!;
  }
  const indexName = `${base}.safetensors.index.json`;
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  await writeFileAtomic(join(dir, indexName), (fh) =>
    writeAll(fh, new TextEncoder().encode(`${JSON.stringify(index, null, 2)}\n`)),
  );
  return [...names, indexName];
}
