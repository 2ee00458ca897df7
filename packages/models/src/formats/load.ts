/**
 * loadCheckpoint(path): a directory is a Hugging Face model, a file starting with the GGUF magic is
 * GGUF, any other file is tried as a llama2.c checkpoint (whose header and size are validated).
 */
import { open, stat } from 'node:fs/promises';
import type { Checkpoint, LoadCheckpointOptions } from './checkpoint.js';
import { describeError, FormatError } from './errors.js';
import { loadGguf } from './gguf/llama.js';
import { GGUF_MAGIC } from './gguf/read.js';
import { loadHfDirectory } from './hf-dir.js';
import { loadLlama2c } from './llama2c.js';

export async function loadCheckpoint(path: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (e) {
    throw new FormatError(path, `cannot load a checkpoint: ${describeError(e)}`, { cause: e });
  }
  if (isDir) return loadHfDirectory(path, options);
  const fh = await open(path, 'r');
  const head = new Uint8Array(4);
  let n: number;
  try {
    n = (await fh.read(head, 0, 4, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  if (n === 4 && new DataView(head.buffer).getUint32(0, true) === GGUF_MAGIC) return loadGguf(path, options);
  if (path.endsWith('.gguf'))
    throw new FormatError(path, 'has a .gguf name but does not start with the GGUF magic');
  if (path.endsWith('.safetensors')) {
    throw new FormatError(path, 'is a bare safetensors file; load its directory (with config.json) instead');
  }
  return loadLlama2c(path, options);
}
