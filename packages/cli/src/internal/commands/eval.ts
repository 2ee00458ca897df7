import type { EvalCommandFlags } from '../../program.js';
import {
  attachAdapter,
  backendInfo,
  type CommandContext,
  computeInfo,
  openModel,
  withBackend,
} from '../context.js';
import { evaluate } from '../evaluate.js';
import {
  namedFiles,
  requireAdapterDir,
  requireInputFiles,
  taskFlags,
  textSourceOptions,
  UsageError,
} from '../flags.js';
import { modelSummary } from './info.js';

export async function evalCommand(source: string, ctx: CommandContext<EvalCommandFlags>) {
  const { flags } = ctx;
  const texts = namedFiles('--ppl', flags.ppl);
  for (const [, file] of texts) textSourceOptions(flags, file);
  const tasks = taskFlags(flags.task);
  if (texts.length === 0 && tasks.length === 0)
    throw new UsageError('eval needs at least one --ppl NAME=FILE or --task NAME=FILE');
  requireInputFiles(flags, { '--ppl': texts, '--task': tasks });
  requireAdapterDir(flags.adapter);
  await ctx.outputs.checkFile('--json', flags.json);
  const loaded = await openModel(source, flags);
  const adapted = flags.adapter ? await attachAdapter(loaded.model, flags.adapter) : undefined;
  if (adapted) {
    const { r, lora_alpha, target_modules } = adapted.summary;
    ctx.progress.note(
      `adapter ${flags.adapter} (LoRA r ${r}, alpha ${lora_alpha} on ${target_modules.join(', ')}), unmerged`,
    );
  }
  await withBackend(ctx, async (run) => {
    const {
      ppl,
      nll,
      tokens,
      tasks: scores,
      paper_average,
      paper_tasks,
      exec,
      compute,
    } = await evaluate(run, adapted?.model ?? loaded.model, loaded.tokenizer, texts, tasks);
    const ran = computeInfo(run.backend, flags.computeDtype, compute);
    if (ran.dtype !== 'float32') ctx.out(`compute ${ran.dtype} (${ran.precision})\n`);
    for (const [k, v] of Object.entries(ppl)) {
      ctx.out(`ppl ${k.padEnd(16)} ${v.toFixed(4)}  (nll ${nll[k]!.toFixed(5)}, ${tokens[k]} tokens)\n`);
    }
    for (const [k, v] of Object.entries(scores)) {
      const paper = v.paper === null || v.paper === undefined ? '' : `  paper ${v.paper.toFixed(4)}`;
      ctx.out(
        `task ${k.padEnd(15)} acc ${v.acc.toFixed(4)}  acc_norm ${v.acc_norm === null ? '   -  ' : v.acc_norm.toFixed(4)}  n ${v.n}${paper}\n`,
      );
    }
    if (paper_average !== null)
      ctx.out(
        `task ${'paper average'.padEnd(15)} ${paper_average.toFixed(4)} over ${paper_tasks} of 7 tasks\n`,
      );
    const result = {
      model: modelSummary(loaded),
      adapter: adapted?.summary ?? null,
      backend: backendInfo(run.backend),
      exec,
      compute: ran,
      zeroshot_protocol: flags.zeroshotProtocol,
      ppl_join: flags.pplJoin ?? null,
      field: flags.field ?? null,
      ppl,
      nll,
      tokens,
      tasks: scores,
      paper_average,
      paper_tasks,
    };
    if (flags.json) await ctx.outputs.writeJson(flags.json, result);
  });
}
