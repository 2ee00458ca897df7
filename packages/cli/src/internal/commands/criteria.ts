import { getCriterion, listCriteria, PRUNING_PRESETS, referenceLayerRange, SCOPE_KINDS } from '@moreau/core';
import type { CriteriaFlags } from '../../program.js';
import { type CommandContext, loadPlugins } from '../context.js';
import { writeJsonAtomic } from '../output.js';

export async function criteriaCommand({ flags, out }: CommandContext<CriteriaFlags>): Promise<void> {
  await loadPlugins(flags.plugin);
  const list = listCriteria().map((name) => {
    const c = getCriterion(name);
    return {
      name,
      description: c.description,
      requires: c.requires,
      scopes: c.scopes ?? SCOPE_KINDS,
      default_reduction: c.defaultReduction,
      options: c.options,
    };
  });
  for (const c of list) {
    out(`${c.name} — ${c.description}\n`);
    out(
      `  needs: ${[c.requires.gradients && 'gradients', c.requires.calibration && 'calibration', c.requires.forward && 'forward passes'].filter(Boolean).join(', ') || 'weights only'}; scopes: ${c.scopes.join(', ')}; default reduction: ${c.default_reduction}\n`,
    );
    for (const [k, o] of Object.entries(c.options)) {
      const values = o.type === 'enum' ? ` (${o.values.join(' | ')})` : '';
      out(`  --opt ${k}=${String(o.default)}${values}  ${o.description}\n`);
    }
  }
  const presets = PRUNING_PRESETS.map((p) => ({
    name: p.name,
    description: p.description,
    source: p.source,
    criterion: p.criterion,
    options: p.options,
    reduction: p.reduction,
    ratio: p.ratio,
    calibration: p.calibration,
    layers: 'attention and MLP [floor(L/8), L - floor(L/16)): layers 4..29 of 32',
  }));
  out('\npresets (--preset NAME sets these defaults; explicit flags win):\n');
  for (const p of presets) {
    out(`${p.name} — ${p.description}\n`);
    out(`  from: ${p.source.repository}@${p.source.commit} (${p.source.files.join(', ')})\n`);
    out(
      `  sets: --criterion ${p.criterion} --ratio ${p.ratio} --reduction ${p.reduction} --calib-sampling ${p.calibration.sampling} --calib-samples ${p.calibration.samples} --calib-seq-len ${p.calibration.seqLen} (at most the model's positions) ${Object.entries(
        p.options,
      )
        .map(([k, v]) => `--opt ${k}=${v}`)
        .join(' ')}\n`,
    );
    out(
      `  layers: --attn-layers / --mlp-layers [floor(L/8), L - floor(L/16)): ${[32, 22, 5].map((L) => `${referenceLayerRange(L).join(':')} of ${L}`).join(', ')}\n`,
    );
  }
  if (flags.json) await writeJsonAtomic(flags.json, { criteria: list, presets });
}
