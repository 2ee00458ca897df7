/**
 * LoRA adapters as a PEFT folder: `adapter_config.json` (peft_type LORA, task_type CAUSAL_LM, r,
 * lora_alpha, lora_dropout, target_modules, ...) and `adapter_model.safetensors` with PEFT's tensor
 * names (`base_model.model.` + the model's parameter name, e.g.
 * `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, A [r, in], B [out, r]), so
 * Python's `PeftModel.from_pretrained(base, dir)` loads it on the (pruned) base model.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type HostTensor,
  isLoraParam,
  type LoraAdapters,
  type LoraConfig,
  type OutputTransaction,
} from '@moreau/core';
import { describeError, FormatError } from './errors.js';
import { writeAll, writeDirAtomic, writeFileAtomic } from './io.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';

/** PEFT's prefix of every saved tensor name of a causal LM. */
export const PEFT_PREFIX = 'base_model.model.';
export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export interface SaveLoraAdapterOptions {
  /** `base_model_name_or_path` in adapter_config.json (e.g. the pruned model's folder). */
  readonly baseModel?: string;
  /** Replace a non-empty existing folder. Default false (an error). */
  readonly overwrite?: boolean;
  /** Writes further files into the folder before it is renamed into place (e.g. a checkpoint's state). */
  readonly extra?: (tmpDir: string) => Promise<void>;
  /** Stage the folder in this transaction (put in place when it commits) instead of writing it now. */
  readonly transaction?: OutputTransaction;
}

/** The adapter_config.json PEFT writes for these adapters. */
export function peftAdapterConfig(config: LoraConfig, baseModel?: string): Record<string, unknown> {
  return {
    base_model_name_or_path: baseModel ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: config.r,
    target_modules: [...config.targets],
    task_type: 'CAUSAL_LM',
  };
}

/**
 * Writes the adapters as a PEFT folder, atomically (filled under a temporary name, then renamed).
 * Returns the file names written by this function (not those of `extra`).
 */
export async function saveLoraAdapter(
  dir: string,
  adapters: LoraAdapters,
  options: SaveLoraAdapterOptions = {},
): Promise<string[]> {
  const tensors = new Map<string, HostTensor>();
  for (const [name, t] of adapters.params) {
    if (!isLoraParam(name)) throw new FormatError(dir, `'${name}' is not a LoRA adapter tensor`);
    tensors.set(`${PEFT_PREFIX}${name}`, t);
  }
  const json = `${JSON.stringify(peftAdapterConfig(adapters.config, options.baseModel), null, 2)}\n`;
  await writeDirAtomic(
    dir,
    async (tmp) => {
      await writeFileAtomic(join(tmp, ADAPTER_CONFIG), (fh) => writeAll(fh, new TextEncoder().encode(json)));
      await writeSafetensors(join(tmp, ADAPTER_WEIGHTS), tensors);
      await options.extra?.(tmp);
    },
    {
      overwrite: options.overwrite ?? false,
      ...(options.transaction ? { transaction: options.transaction } : {}),
    },
  );
  return [ADAPTER_CONFIG, ADAPTER_WEIGHTS];
}

/** A PEFT LoRA folder read back: the adapters (model parameter names) and the base model it names. */
export interface LoadedLoraAdapter extends LoraAdapters {
  readonly baseModel: string | null;
}

function field<T>(
  dir: string,
  json: Record<string, unknown>,
  key: string,
  ok: (v: unknown) => v is T,
  what: string,
): T {
  const v = json[key];
  if (!ok(v))
    throw new FormatError(join(dir, ADAPTER_CONFIG), `'${key}' must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Reads a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors) written by this
 * package or by PEFT itself for a LLaMA causal LM: LORA, bias "none", fan_in_fan_out false, every
 * tensor named `base_model.model.<param>.lora_A|B.weight`.
 */
export async function loadLoraAdapter(dir: string): Promise<LoadedLoraAdapter> {
  const configFile = join(dir, ADAPTER_CONFIG);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(configFile, 'utf8'));
  } catch (e) {
    throw new FormatError(configFile, `cannot read the adapter config (${describeError(e)})`, { cause: e });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new FormatError(configFile, 'is not a JSON object');
  const isString = (v: unknown): v is string => typeof v === 'string';
  const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  const peftType = field(dir, json, 'peft_type', isString, 'a string');
  if (peftType !== 'LORA')
    throw new FormatError(configFile, `peft_type is '${peftType}', only LORA adapters load here`);
  if ((json.bias ?? 'none') !== 'none')
    throw new FormatError(configFile, `bias '${String(json.bias)}' is not supported (only "none")`);
  if (json.fan_in_fan_out === true)
    throw new FormatError(configFile, 'fan_in_fan_out true is not supported (LLaMA weights are [out, in])');
  const r = field(
    dir,
    json,
    'r',
    (v): v is number => Number.isInteger(v) && (v as number) > 0,
    'a positive integer',
  );
  const alpha = field(dir, json, 'lora_alpha', isNumber, 'a number');
  const dropout =
    json.lora_dropout === undefined ? 0 : field(dir, json, 'lora_dropout', isNumber, 'a number');
  const targets = field(
    dir,
    json,
    'target_modules',
    (v): v is string[] => Array.isArray(v) && v.length > 0 && v.every(isString),
    'a non-empty list of module names',
  );
  const weightsFile = join(dir, ADAPTER_WEIGHTS);
  const { tensors } = await readSafetensors(weightsFile);
  const params = new Map<string, HostTensor>();
  for (const [name, t] of tensors) {
    if (!name.startsWith(PEFT_PREFIX) || !isLoraParam(name)) {
      throw new FormatError(
        weightsFile,
        `tensor '${name}' is not a LoRA matrix named ${PEFT_PREFIX}<param>.lora_A|B.weight`,
      );
    }
    params.set(name.slice(PEFT_PREFIX.length), t);
  }
  const baseModel = typeof json.base_model_name_or_path === 'string' ? json.base_model_name_or_path : null;
  return { config: { r, alpha, dropout, targets }, params, baseModel };
}
