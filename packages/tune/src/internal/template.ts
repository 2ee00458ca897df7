/**
 * Prompt templates in Alpaca-LoRA's format (`prompt_input`, `prompt_no_input`, `response_split`),
 * filled the way its Prompter does: `prompt_input` when the record has a non-empty input, else
 * `prompt_no_input`, with Python str.format placeholders ({instruction}, {input}; {{ and }} for
 * literal braces), then the output appended when non-empty.
 */
import { readFile } from 'node:fs/promises';
import { InputError } from '@moreau/core';

export interface PromptTemplate {
  readonly description?: string;
  /** Used when the record has an input: {instruction} and {input}. */
  readonly prompt_input: string;
  /** Used when it has none: {instruction}. */
  readonly prompt_no_input: string;
  /** Marks where the response starts in a generated text. */
  readonly response_split: string;
}

/** Alpaca-LoRA's template (templates/alpaca.json), the one LLM-Pruner's post_training.py uses. */
export const ALPACA_TEMPLATE: PromptTemplate = {
  description: 'Template used by Alpaca-LoRA.',
  prompt_input:
    'Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n',
  prompt_no_input:
    'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n',
  response_split: '### Response:',
};

/** Python's str.format for named fields only: {name} replaced, {{ and }} literal; anything else an error. */
export function formatFields(
  template: string,
  fields: Readonly<Record<string, string>>,
  what = 'template',
): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === '{' && template[i + 1] === '{') {
      out += '{';
      i++;
    } else if (c === '}' && template[i + 1] === '}') {
      out += '}';
      i++;
    } else if (c === '{') {
      const end = template.indexOf('}', i);
      const name = end < 0 ? '' : template.slice(i + 1, end);
      if (end < 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        throw new InputError(
          `${what}: a '{' at offset ${i} opens no {name} field (write {{ for a literal brace)`,
        );
      }
      const value = fields[name];
      if (value === undefined)
        throw new InputError(
          `${what}: unknown field {${name}}; available: ${Object.keys(fields)
            .map((k) => `{${k}}`)
            .join(', ')}`,
        );
      out += value;
      i = end;
    } else if (c === '}') {
      throw new InputError(`${what}: a single '}' at offset ${i} (write }} for a literal brace)`);
    } else out += c;
  }
  return out;
}

/**
 * The prompt of one record: the template's prompt_input (non-empty input) or prompt_no_input,
 * followed by the output when it is non-empty (Alpaca-LoRA's Prompter.generate_prompt).
 */
export function formatPrompt(
  template: PromptTemplate,
  instruction: string,
  input?: string,
  output?: string,
): string {
  const prompt = input
    ? formatFields(template.prompt_input, { instruction, input }, 'prompt_input')
    : formatFields(template.prompt_no_input, { instruction }, 'prompt_no_input');
  return output ? `${prompt}${output}` : prompt;
}

/** Checks a parsed template file: the three string fields, placeholders that format. */
export function parseTemplate(json: unknown, file = 'template'): PromptTemplate {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new InputError(`${file}: a prompt template must be a JSON object`, file);
  const t = json as Record<string, unknown>;
  for (const key of ['prompt_input', 'prompt_no_input', 'response_split']) {
    if (typeof t[key] !== 'string')
      throw new InputError(`${file}: field '${key}' is missing or not a string`, file, key);
  }
  if (t.description !== undefined && typeof t.description !== 'string')
    throw new InputError(`${file}: field 'description' must be a string`, file, 'description');
  const template = t as unknown as PromptTemplate;
  // Every placeholder must format (a typo like {instrution} fails here, not mid-run).
  for (const key of ['prompt_input', 'prompt_no_input'] as const) {
    try {
      formatFields(template[key], { instruction: 'i', input: 'x' }, key);
    } catch (e) {
      throw new InputError(`${file}: ${(e as Error).message}`, file, key);
    }
  }
  if (!template.prompt_input.includes('{input}'))
    throw new InputError(`${file}: prompt_input has no {input} field`, file, 'prompt_input');
  return template;
}

/** Reads and checks a template file. */
export async function loadTemplate(file: string): Promise<PromptTemplate> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new InputError(
      `template '${file}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      file,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  return parseTemplate(json, file);
}
