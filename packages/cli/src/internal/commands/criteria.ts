import { detectTfjsEngines } from '@moreau/backend-tfjs';
import { getCriterion, listCriteria } from '@moreau/core';
import type { CriteriaFlags } from '../../program.js';
import { type CommandContext, loadPlugins } from '../context.js';

/** Every registered criterion with its options, then the tensor engines this installation has. */
export async function criteriaCommand(ctx: CommandContext<CriteriaFlags>): Promise<void> {
  const { flags, out } = ctx;
  await ctx.outputs.checkFile('--json', flags.json);
  await loadPlugins(flags.plugin);
  const list = listCriteria().map((name) => {
    const c = getCriterion(name);
    return {
      name,
      description: c.description,
      requires: c.requires,
      default_reduction: c.defaultReduction,
      options: c.options,
    };
  });
  for (const c of list) {
    out(`${c.name} — ${c.description}\n`);
    out(
      `  needs: ${[c.requires.gradients && 'gradients', c.requires.calibration && 'calibration'].filter(Boolean).join(', ') || 'weights only'}; default reduction: ${c.default_reduction}\n`,
    );
    for (const [k, o] of Object.entries(c.options)) {
      const values = o.type === 'enum' ? ` (${o.values.join(' | ')})` : '';
      out(`  --opt ${k}=${String(o.default)}${values}  ${o.description}\n`);
    }
  }
  const engines = await detectTfjsEngines();
  out('\ntensor engines: ort (onnxruntime-node: cpu; cuda where installed)\n');
  for (const e of engines) {
    const status = e.available
      ? `available (${e.device})`
      : `not available: ${e.installed ? (e.reason ?? 'failed to load') : `${e.package} is not installed`}`;
    out(`  tfjs ${e.engine.padEnd(9)}${status}\n`);
  }
  if (flags.json) await ctx.outputs.writeJson(flags.json, { criteria: list, tfjs_engines: engines });
}
