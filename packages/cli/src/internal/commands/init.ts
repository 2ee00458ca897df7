import { resolve } from 'node:path';
import { initModel, LLAMA_PRESET_NAMES, llamaPreset } from '@moreau/models';
import type { InitFlags } from '../../program.js';
import type { CommandContext } from '../context.js';
import { UsageError } from '../flags.js';
import { guardDir } from '../output.js';

/** moreau init: a random model of a preset shape, streamed to an HF directory (models' initModel). */
export async function initCommand({
  flags,
  progress,
  signal,
  out,
}: CommandContext<InitFlags>): Promise<void> {
  if (!(LLAMA_PRESET_NAMES as readonly string[]).includes(flags.preset)) {
    throw new UsageError(`--preset must be one of ${LLAMA_PRESET_NAMES.join(', ')}, got '${flags.preset}'`);
  }
  const layers = llamaPreset(flags.preset).numHiddenLayers;
  if (flags.layers !== undefined && flags.layers > layers) {
    throw new UsageError(
      `--layers must be at most ${layers} (${flags.preset} has ${layers} layers), got ${flags.layers}`,
    );
  }
  const phase = `writing ${flags.preset} (${flags.dtype}) to ${flags.out}, MB`;
  const unguard = guardDir(flags.out);
  try {
    const r = await initModel({
      preset: flags.preset,
      out: flags.out,
      dtype: flags.dtype,
      seed: flags.seed,
      ...(flags.layers !== undefined ? { layers: flags.layers } : {}),
      overwrite: flags.overwrite,
      signal,
      onProgress: (p) =>
        progress.update({
          phase,
          done: Math.round(p.bytesDone / 1e6),
          total: Math.round(p.bytesTotal / 1e6),
        }),
    });
    const shards = r.files.filter((f) => f.endsWith('.safetensors')).length;
    out(
      `wrote ${resolve(r.dir)}: ${flags.preset}, ${r.config.numHiddenLayers} layers, ` +
        `${(r.params / 1e9).toFixed(2)}B parameters, ${flags.dtype}, ${(r.bytes / 1e9).toFixed(2)} GB in ${shards} shard${shards > 1 ? 's' : ''}\n`,
    );
  } finally {
    unguard();
  }
}
