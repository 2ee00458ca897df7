import { getCriterion, listCriteria, SCOPE_KINDS } from '@moreau/core';
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
  if (flags.json) await writeJsonAtomic(flags.json, { criteria: list });
}
