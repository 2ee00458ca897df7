import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type HostTensor, hostTensorsEqual } from '@moreau/core';
import { useScratchDir } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { FormatError } from './errors.js';
import {
  openSafetensors,
  readSafetensors,
  readShardedSafetensors,
  writeSafetensors,
  writeSafetensorsDir,
} from './safetensors.js';

const dir = useScratchDir();

const f32 = (shape: number[], f: (i: number) => number): HostTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'float32', shape, data: Float32Array.from({ length: n }, (_, i) => f(i)) };
};

/** Build a safetensors file by hand: header JSON, then `dataLen` bytes; optionally lie about the header length. */
async function rawFile(name: string, header: unknown, dataLen: number, headerLen?: bigint): Promise<string> {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const buf = new Uint8Array(8 + json.length + dataLen);
  new DataView(buf.buffer).setBigUint64(0, headerLen ?? BigInt(json.length), true);
  buf.set(json, 8);
  const path = join(dir(), name);
  await writeFile(path, buf);
  return path;
}

async function expectFormatError(p: Promise<unknown>, file: string, re: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(FormatError);
  expect((e as FormatError).file).toBe(file);
  expect((e as FormatError).detail).toMatch(re);
}

describe('safetensors', () => {
  it('round-trips F32 / F16 / BF16 / I32 / BOOL exactly, 8-byte aligned', async () => {
    const tensors = new Map<string, HostTensor>([
      ['a.weight', f32([3, 5], (i) => i * 0.25 - 1)],
      [
        'half',
        {
          dtype: 'float16',
          shape: [7],
          data: Uint16Array.from([0x3c00, 0x7c00, 0x7e01, 1, 0x8000, 0x7bff, 3]),
        },
      ],
      ['b16', { dtype: 'bfloat16', shape: [2, 1], data: Uint16Array.from([0x3f80, 0x7fc1]) }],
      ['ids', { dtype: 'int32', shape: [3], data: Int32Array.from([-1, 0, 2 ** 31 - 1]) }],
      ['mask', { dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) }],
      ['scalar', f32([], () => 42)],
      ['empty', f32([0, 4], () => 0)],
    ]);
    const file = join(dir(), 'rt.safetensors');
    await writeSafetensors(file, tensors, { metadata: { note: 'hi' } });
    const { tensors: back, metadata, dtypes } = await readSafetensors(file);
    expect(metadata).toEqual({ note: 'hi', format: 'pt' });
    expect(dtypes.get('b16')).toBe('BF16');
    for (const [name, t] of tensors) expect(hostTensorsEqual(back.get(name)!, t), name).toBe(true);
    const bytes = await readFile(file);
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const st = await openSafetensors(file);
    for (const info of st.tensors.values()) {
      const width = { F32: 4, I32: 4, F16: 2, BF16: 2, BOOL: 1 }[info.dtype];
      expect(info.begin % width).toBe(0);
    }
    await st.close();
    expect((await readdir(dir())).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('converts on write and on read', async () => {
    const t = f32([4], (i) => [1, 1 + 2 ** -11, 65520, 2 ** -25][i]!);
    const file = join(dir(), 'half.safetensors');
    await writeSafetensors(file, { w: t }, { dtype: 'float16' });
    const { tensors } = await readSafetensors(file);
    expect(tensors.get('w')!.dtype).toBe('float16');
    expect([...(tensors.get('w')!.data as Uint16Array)]).toEqual([0x3c00, 0x3c00, 0x7c00, 0]);
    const asF32 = await readSafetensors(file, { dtype: 'float32' });
    expect([...(asF32.tensors.get('w')!.data as Float32Array)]).toEqual([1, 1, Number.POSITIVE_INFINITY, 0]);
    const file2 = join(dir(), 'bf.safetensors');
    await writeSafetensors(file2, { w: t }, { dtype: 'bfloat16' });
    expect((await readSafetensors(file2)).tensors.get('w')!.dtype).toBe('bfloat16');
  });

  it('writes and reads shards with an index', async () => {
    const tensors = new Map<string, HostTensor>();
    for (let k = 0; k < 5; k++)
      tensors.set(
        `t${k}`,
        f32([10, 10], (i) => k * 1000 + i),
      );
    const sub = join(dir(), 'sharded');
    await (await import('node:fs/promises')).mkdir(sub);
    const files = await writeSafetensorsDir(sub, tensors, { maxShardBytes: 900 });
    expect(files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(await readFile(join(sub, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(5 * 400);
    const back = await readShardedSafetensors(join(sub, 'model.safetensors.index.json'));
    expect([...back.tensors.keys()].sort()).toEqual([...tensors.keys()].sort());
    for (const [name, t] of tensors) expect(hostTensorsEqual(back.tensors.get(name)!, t)).toBe(true);
    // An index pointing a tensor at the wrong shard is an error naming the tensor and shard.
    index.weight_map.t0 = 'model-00002-of-00003.safetensors';
    await writeFile(join(sub, 'model.safetensors.index.json'), JSON.stringify(index));
    await expectFormatError(
      readShardedSafetensors(join(sub, 'model.safetensors.index.json')),
      join(sub, 'model.safetensors.index.json'),
      /tensor t0 is in model-00002-of-00003.safetensors, but it is not there/,
    );
  });

  it('reads tensors with positional reads, one at a time', async () => {
    const file = join(dir(), 'lazy.safetensors');
    await writeSafetensors(file, { x: f32([2, 2], (i) => i), y: f32([3], (i) => -i) });
    const st = await openSafetensors(file);
    expect([...st.tensors.keys()]).toEqual(['x', 'y']);
    expect([...((await st.read('y')).data as Float32Array)]).toEqual([-0, -1, -2]);
    await expectFormatError(st.read('z'), file, /has no tensor named z/);
    await st.close();
  });

  describe('errors name the file, the tensor and what was expected', () => {
    const good = {
      __metadata__: { format: 'pt' },
      w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
    };

    it('truncated file (data shorter than the offsets)', async () => {
      const file = join(dir(), 'trunc.safetensors');
      await writeSafetensors(file, { w: f32([4, 4], (i) => i) });
      const bytes = await readFile(file);
      await writeFile(file, bytes.subarray(0, bytes.length - 10));
      await expectFormatError(
        openSafetensors(file),
        file,
        /tensor w: data_offsets \[0, 64\] go past the end.*truncated/,
      );
      await writeFile(file, bytes.subarray(0, 5));
      await expectFormatError(openSafetensors(file), file, /truncated: 5 bytes/);
    });

    it('bad header length', async () => {
      const file = await rawFile('badlen.safetensors', good, 16, 10_000n);
      await expectFormatError(
        openSafetensors(file),
        file,
        /header length 10000 is larger than the rest of the file/,
      );
      const zero = await rawFile('zerolen.safetensors', good, 16, 0n);
      await expectFormatError(openSafetensors(zero), zero, /header length is 0/);
      const short = await rawFile('shortlen.safetensors', good, 16, 20n);
      await expectFormatError(openSafetensors(short), short, /header is not valid JSON/);
    });

    it('offsets past the end', async () => {
      const file = await rawFile(
        'past.safetensors',
        {
          w: { dtype: 'F32', shape: [2, 2], data_offsets: [16, 32] },
          v: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        },
        16,
      );
      await expectFormatError(
        openSafetensors(file),
        file,
        /tensor w: data_offsets \[16, 32\] go past the end of the data section \(16 bytes/,
      );
    });

    it('shape / byte-size mismatch', async () => {
      const file = await rawFile(
        'shape.safetensors',
        { w: { dtype: 'BF16', shape: [3, 2], data_offsets: [0, 16] } },
        16,
      );
      await expectFormatError(
        openSafetensors(file),
        file,
        /tensor w: shape \[3, 2\] with dtype BF16 needs 12 bytes but data_offsets \[0, 16\] span 16 bytes/,
      );
    });

    it('overlapping, gapped and trailing data', async () => {
      const overlap = await rawFile(
        'overlap.safetensors',
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        12,
      );
      await expectFormatError(openSafetensors(overlap), overlap, /tensor b overlaps tensor a/);
      const gap = await rawFile(
        'gap.safetensors',
        { a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
        12,
      );
      await expectFormatError(openSafetensors(gap), gap, /gap in the data section: tensor a starts at 4/);
      const trailing = await rawFile('trail.safetensors', good, 20);
      await expectFormatError(openSafetensors(trailing), trailing, /4 trailing bytes/);
    });

    it('unsupported dtypes and malformed entries', async () => {
      const f64 = await rawFile(
        'f64.safetensors',
        { w: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } },
        16,
      );
      await expectFormatError(
        openSafetensors(f64),
        f64,
        /tensor w has dtype "F64"; supported: F32, F16, BF16, I32, BOOL/,
      );
      const neg = await rawFile(
        'neg.safetensors',
        { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } },
        4,
      );
      await expectFormatError(
        openSafetensors(neg),
        neg,
        /tensor w: shape must be a list of at most 8 non-negative integers/,
      );
      const meta = await rawFile('meta.safetensors', { __metadata__: { a: 1 } }, 0);
      await expectFormatError(openSafetensors(meta), meta, /__metadata__.a must be a string/);
    });

    it('a failed write leaves nothing behind and keeps the old file', async () => {
      const file = join(dir(), 'keep.safetensors');
      await writeSafetensors(file, { w: f32([2], (i) => i) });
      const before = await stat(file);
      const bad: HostTensor = { dtype: 'float32', shape: [3], data: new Float32Array(2) };
      await expectFormatError(
        writeSafetensors(file, { w: bad }),
        file,
        /cannot write tensor w: shape \[3\] needs 3 elements but data has 2/,
      );
      expect((await stat(file)).size).toBe(before.size);
      expect((await readdir(dir())).filter((f) => f.includes('.tmp-'))).toEqual([]);
    });
  });
});
