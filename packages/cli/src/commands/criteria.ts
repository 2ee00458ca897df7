import { getCriterion, listCriteria } from '@moreau/core';
import { writeJsonAtomic } from '../output.js';
import { loadPlugins, type Opts } from './context.js';

export async function criteriaCommand(opts: Opts): Promise<void> {
  await loadPlugins(opts.plugin);
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
    process.stdout.write(`${c.name} — ${c.description}\n`);
    process.stdout.write(
      `  needs: ${[c.requires.gradients && 'gradients', c.requires.calibration && 'calibration'].filter(Boolean).join(', ') || 'weights only'}; default reduction: ${c.default_reduction}\n`,
    );
    for (const [k, o] of Object.entries(c.options)) {
      const values = o.type === 'enum' ? ` (${o.values.join(' | ')})` : '';
      process.stdout.write(`  --opt ${k}=${String(o.default)}${values}  ${o.description}\n`);
    }
  }
  if (opts.json) await writeJsonAtomic(String(opts.json), { criteria: list });
}
