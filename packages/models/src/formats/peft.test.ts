import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findLoraTargets, initLora, type LoraConfig } from '@moreau/core';
import { smallConfig, useScratchDir } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import { randomInit } from '../llama/presets.js';
import { loadLoraAdapter, saveLoraAdapter } from './peft.js';
import { readSafetensors } from './safetensors.js';

const dir = useScratchDir();
const scratch = () => mkdtemp(join(dir(), 'peft-'));

const config = smallConfig();
const lora: LoraConfig = { r: 4, alpha: 16, dropout: 0.05, targets: ['q_proj', 'down_proj'] };
const adapters = {
  config: lora,
  params: initLora(findLoraTargets(randomInit(config, 1), lora.targets), 4, 2),
};

describe('PEFT adapter folders', () => {
  it("writes PEFT's config and tensor names, and reads them back", async () => {
    const dir = join(await scratch(), 'adapter');
    expect(await saveLoraAdapter(dir, adapters, { baseModel: 'pruned/' })).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
    ]);
    const json = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
    expect(json).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'down_proj'],
      base_model_name_or_path: 'pruned/',
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
    });
    const { tensors } = await readSafetensors(join(dir, 'adapter_model.safetensors'));
    expect(tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')?.shape).toEqual([
      4, 32,
    ]);
    expect(tensors.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')?.shape).toEqual([
      32, 4,
    ]);
    expect(tensors.size).toBe(8);
    const back = await loadLoraAdapter(dir);
    expect(back.config).toEqual(lora);
    expect(back.baseModel).toBe('pruned/');
    for (const [n, t] of adapters.params)
      expect(Array.from(back.params.get(n)!.data)).toEqual(Array.from(t.data));
    await expect(saveLoraAdapter(dir, adapters)).rejects.toThrow(/not empty/);
  });

  it('names the file and field of a bad config', async () => {
    const dir = join(await scratch(), 'adapter');
    await saveLoraAdapter(dir, adapters);
    const file = join(dir, 'adapter_config.json');
    const json = JSON.parse(await readFile(file, 'utf8'));
    await writeFile(file, JSON.stringify({ ...json, r: 0 }));
    await expect(loadLoraAdapter(dir)).rejects.toThrow(
      /adapter_config\.json.*'r' must be a positive integer/,
    );
    await writeFile(file, JSON.stringify({ ...json, peft_type: 'IA3' }));
    await expect(loadLoraAdapter(dir)).rejects.toThrow(/only LORA/);
  });
});
