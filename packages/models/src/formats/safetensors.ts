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
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  bytesPerElement,
  type DType,
  type FloatDType,
  type HostTensor,
  isFloat,
  sizeOf,
  throwIfAborted,
} from '@moreau/core';
import { brief, describeError, FormatError } from './errors.js';
import {
  assertLittleEndianHost,
  isJsonObject,
  openForRead,
  readExactly,
  readJsonFile,
  writeAll,
  writeFileAtomic,
} from './io.js';
import {
  type FileStamp,
  type LazyOption,
  materializeTensors,
  type StoredTensor,
  stampOf,
  type TensorSource,
} from './stored.js';
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
  /** Read tensors when their data is first used (see LoadCheckpointOptions.lazy). Default 'auto'. */
  lazy?: LazyOption;
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
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string, got ${brief(v)}`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (!isJsonObject(entry)) fail(`tensor ${name}: header entry must be an object`);
    const e = entry as Record<string, unknown>;
    const dt = e.dtype;
    if (typeof dt !== 'string') return fail(`tensor ${name}: dtype must be a string`);
    if (!Object.hasOwn(TO_HOST, dt)) {
      fail(`tensor ${name} has dtype ${brief(dt)}; supported: ${Object.keys(TO_HOST).join(', ')}`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      return fail(
        `tensor ${name}: shape must be a list of at most 8 non-negative integers, got ${brief(shape)}`,
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
        `tensor ${name}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${brief(off)}`,
      );
    }
    const [b, en] = off as [number, number];
    const sdt = dt as SafetensorsDType;
    const need = sizeOf(shape as number[]) * bytesPerElement(TO_HOST[sdt]);
    if (!Number.isSafeInteger(need) || need !== en - b) {
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
    const { metadata, tensors } = await readHeader(fh, file, size);
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

async function readHeader(
  fh: import('node:fs/promises').FileHandle,
  file: string,
  size: number,
): Promise<{ metadata: Record<string, string>; tensors: Map<string, SafetensorsTensorInfo> }> {
  if (size < 8) throw new FormatError(file, `truncated: ${size} bytes, a safetensors file needs at least 8`);
  const lenBuf = new Uint8Array(8);
  await readExactly(fh, file, lenBuf, 0, 'header length');
  const n = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (n === 0n) throw new FormatError(file, 'header length is 0');
  if (n > BigInt(size - 8)) {
    throw new FormatError(file, `header length ${n} is larger than the rest of the file (${size - 8} bytes)`);
  }
  if (n > BigInt(MAX_SAFETENSORS_HEADER)) {
    throw new FormatError(file, `header length ${n} exceeds the ${MAX_SAFETENSORS_HEADER}-byte limit`);
  }
  const header = new Uint8Array(Number(n));
  await readExactly(fh, file, header, 8, 'header');
  return parseSafetensorsHeader(file, header, size);
}

/** A safetensors file's header: every tensor's location (nothing of the data is read). */
export interface SafetensorsIndexed {
  metadata: Record<string, string>;
  tensors: Map<string, StoredTensor>;
  /** Storage dtype of each tensor as in the file. */
  dtypes: Map<string, SafetensorsDType>;
}

function storedFrom(file: string, stamp: FileStamp, infos: ReadonlyMap<string, SafetensorsTensorInfo>) {
  const tensors = new Map<string, StoredTensor>();
  const dtypes = new Map<string, SafetensorsDType>();
  for (const [name, info] of infos) {
    tensors.set(name, {
      file,
      name,
      dtype: TO_HOST[info.dtype],
      shape: info.shape,
      offset: info.begin,
      byteLength: info.end - info.begin,
      stamp,
    });
    dtypes.set(name, info.dtype);
  }
  return { tensors, dtypes };
}

/** Read and validate one safetensors file's header (the tensors' bytes are not read). */
export async function indexSafetensors(file: string): Promise<SafetensorsIndexed> {
  assertLittleEndianHost(file);
  const { fh, size } = await openForRead(file);
  try {
    const stamp = await stampOf(fh);
    const { metadata, tensors } = await readHeader(fh, file, size);
    return { metadata, ...storedFrom(file, stamp, tensors) };
  } finally {
    await fh.close();
  }
}

export interface SafetensorsContents {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
  /** Storage dtype of each tensor as in the file. */
  dtypes: Map<string, SafetensorsDType>;
}

/** Sources that load `tensors` converted to `dtype`; `checkFinite` as given. */
function sourcesOf(
  tensors: ReadonlyMap<string, StoredTensor>,
  dtype: FloatDType | undefined,
  checkFinite: boolean,
): Map<string, TensorSource> {
  const recipe = { ...(dtype ? { dtype } : {}), checkFinite };
  return new Map([...tensors].map(([n, stored]) => [n, { stored, recipe }]));
}

/**
 * Every tensor of one safetensors file (any values: NaN / Infinity are not checked here, unlike the
 * model loaders), read now or lazily by `options.lazy`.
 */
export async function readSafetensors(
  file: string,
  options: SafetensorsReadOptions = {},
): Promise<SafetensorsContents> {
  const idx = await indexSafetensors(file);
  const { tensors } = await materializeTensors(sourcesOf(idx.tensors, options.dtype, false), options.lazy);
  return { tensors, metadata: idx.metadata, dtypes: idx.dtypes };
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
    throw new FormatError(indexFile, 'weight_map must be an object of tensor name -> shard file', {
      field: 'weight_map',
    });
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
        `weight_map.${brief(name, 120)} must be a file name in the same directory, got ${brief(shard)}`,
        { field: 'weight_map' },
      );
    }
    weightMap.set(name, shard);
  }
  const metadata = isJsonObject(json.metadata) ? json.metadata : {};
  return { weightMap, metadata };
}

/**
 * Index a sharded checkpoint through its index file: every shard named in weight_map must exist,
 * every indexed tensor must be in its shard, every shard's tensors must be indexed for it, and
 * metadata.total_size (when given) must equal the bytes the shards' headers declare. Nothing of the
 * tensors' data is read.
 */
export async function indexShardedSafetensors(indexFile: string): Promise<SafetensorsIndexed> {
  const index = await readSafetensorsIndex(indexFile);
  const dir = dirname(indexFile);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of index.weightMap) {
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  const tensors = new Map<string, StoredTensor>();
  const dtypes = new Map<string, SafetensorsDType>();
  let metadata: Record<string, string> = {};
  let stored = 0;
  for (const [shard, names] of byShard) {
    const path = join(dir, shard);
    const isFile = await stat(path).then(
      (st) => st.isFile(),
      () => false,
    );
    if (!isFile) {
      throw new FormatError(
        indexFile,
        `weight_map puts tensor ${names[0]}${names.length > 1 ? ` (and ${names.length - 1} more)` : ''} in ${shard}, but ${path} does not exist`,
        { field: 'weight_map' },
      );
    }
    const st = await indexSafetensors(path);
    metadata = { ...metadata, ...st.metadata };
    for (const name of names) {
      const t = st.tensors.get(name);
      if (!t) {
        throw new FormatError(
          indexFile,
          `weight_map says tensor ${name} is in ${shard}, but it is not there`,
          {
            field: 'weight_map',
          },
        );
      }
      tensors.set(name, t);
      dtypes.set(name, st.dtypes.get(name)!);
      stored += t.byteLength;
    }
    for (const name of st.tensors.keys()) {
      if (index.weightMap.get(name) !== shard) {
        throw new FormatError(path, `tensor ${name} is not listed for this shard in ${basename(indexFile)}`);
      }
    }
  }
  const total = index.metadata.total_size;
  if (typeof total === 'number' && total !== stored) {
    throw new FormatError(
      indexFile,
      `metadata.total_size is ${total} but the shards hold ${stored} bytes of tensors`,
      { field: 'metadata.total_size' },
    );
  }
  return { metadata, tensors, dtypes };
}

/** Read a sharded checkpoint through its index file (validated by indexShardedSafetensors). */
export async function readShardedSafetensors(
  indexFile: string,
  options: SafetensorsReadOptions = {},
): Promise<SafetensorsContents> {
  const idx = await indexShardedSafetensors(indexFile);
  const { tensors } = await materializeTensors(sourcesOf(idx.tensors, options.dtype, false), options.lazy);
  return { tensors, metadata: idx.metadata, dtypes: idx.dtypes };
}

export interface SafetensorsWriteOptions {
  /** Store floating-point tensors as this dtype (converted on the host, RNE). Default: as given. */
  dtype?: FloatDType;
  /** String metadata; format: "pt" is always included. */
  metadata?: Record<string, string>;
  /** Called after each tensor is written, with its name and stored bytes. */
  onTensor?: (name: string, bytes: number) => void;
  /** Checked between tensors: an abort stops the write (nothing is left behind) with core's AbortError. */
  signal?: AbortSignal;
}

type TensorMap = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

function entriesOf(tensors: TensorMap): [string, HostTensor][] {
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

/** Stored size in bytes of a set of tensors written with `dtype` (shapes only: nothing is read). */
export function safetensorsDataSize(tensors: TensorMap, dtype?: FloatDType): number {
  let n = 0;
  for (const [, t] of entriesOf(tensors)) n += sizeOf(t.shape) * bytesPerElement(storedDType(t, dtype));
  return n;
}

/**
 * The bytes of one tensor as stored: its data read (a lazy tensor loads here), converted when
 * `dtype` asks, checked against the planned length.
 */
function storedBytes(file: string, p: Planned, dtype: FloatDType | undefined): Uint8Array {
  const bytes = dataBytes(castFloatTensor(p.tensor, dtype).data);
  if (bytes.length !== p.end - p.begin) {
    throw new FormatError(
      file,
      `cannot write tensor ${p.name}: its data has ${bytes.length} bytes, its shape needs ${p.end - p.begin}`,
    );
  }
  return bytes;
}

/**
 * Write one safetensors file atomically (temporary file in the same directory, then rename; removed
 * on any error or abort). Tensors are materialised and converted one at a time, in file order — the
 * next one while the previous one is being written — so at most two tensors' data are held at once
 * beyond what the caller holds: saving a model of lazy tensors never holds the model.
 */
export async function writeSafetensors(
  file: string,
  tensors: TensorMap,
  options: SafetensorsWriteOptions = {},
): Promise<void> {
  assertLittleEndianHost(file);
  throwIfAborted(options.signal);
  const planned = planLayout(file, entriesOf(tensors), options.dtype);
  const header = encodeHeader(planned, options.metadata ?? {});
  await writeFileAtomic(file, async (fh) => {
    await writeAll(fh, header);
    let pending: Promise<void> | undefined;
    let prev: Planned | undefined;
    try {
      for (const p of planned) {
        throwIfAborted(options.signal);
        const bytes = storedBytes(file, p, options.dtype);
        if (pending) {
          await pending;
          options.onTensor?.(prev!.name, prev!.end - prev!.begin);
        }
        pending = writeAll(fh, bytes);
        prev = p;
      }
      if (pending) {
        await pending;
        pending = undefined;
        options.onTensor?.(prev!.name, prev!.end - prev!.begin);
      }
    } catch (e) {
      // Let a write still in flight finish before the caller removes the file.
      await pending?.catch(() => {});
      throw e;
    }
    throwIfAborted(options.signal);
  });
}

/** Default largest shard: 5 GB of tensor data, as transformers' save_pretrained. */
export const DEFAULT_MAX_SHARD_BYTES = 5e9;

export interface ShardedWriteOptions extends SafetensorsWriteOptions {
  /** Largest shard in bytes of tensor data (a single larger tensor gets a shard of its own). Default 5e9. */
  maxShardBytes?: number;
  /** File name stem: `${baseName}.safetensors` or `${baseName}-00001-of-0000N.safetensors`. Default "model". */
  baseName?: string;
}

/**
 * Write tensors into `dir` as `model.safetensors`, or as shards plus `model.safetensors.index.json`
 * when they exceed maxShardBytes (HF's layout: `model-00001-of-00003.safetensors`, ...). Tensors keep
 * the given order across shards and are written one at a time. Returns the file names written.
 */
export async function writeSafetensorsDir(
  dir: string,
  tensors: TensorMap,
  options: ShardedWriteOptions = {},
): Promise<string[]> {
  const max = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(max > 0)) throw new FormatError(dir, `maxShardBytes must be positive, got ${max}`);
  const base = options.baseName ?? 'model';
  const entries = entriesOf(tensors);
  const total = safetensorsDataSize(tensors, options.dtype);
  const { maxShardBytes: _m, baseName: _b, ...writeOptions } = options;
  if (total <= max) {
    const name = `${base}.safetensors`;
    await writeSafetensors(join(dir, name), new Map(entries), writeOptions);
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
  const width = Math.max(5, String(shards.length).length);
  const pad = (i: number): string => String(i).padStart(width, '0');
  const names = shards.map((_, i) => `${base}-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < shards.length; i++) {
    await writeSafetensors(join(dir, names[i]!), new Map(shards[i]!), writeOptions);
    for (const [name] of shards[i]!) weightMap[name] = names[i]!;
  }
  const indexName = `${base}.safetensors.index.json`;
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  await writeFileAtomic(join(dir, indexName), (fh) =>
    writeAll(fh, new TextEncoder().encode(`${JSON.stringify(index, null, 2)}\n`)),
  );
  return [...names, indexName];
}
