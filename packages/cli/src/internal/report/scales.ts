/**
 * What every chart and table of a report shares, so reports compare at a glance: one colour per
 * criterion that is the same in every report, axes fitted to the data, and numbers printed with
 * enough digits to tell apart the values that differ.
 */

/** The built-in criteria's colours (Tableau 10), fixed: taylor is blue in every report. */
const BUILTIN_COLORS: Readonly<Record<string, string>> = {
  taylor: '#4e79a7', // blue
  'moreau-gs': '#e15759', // red
  moreau: '#f28e2b', // orange
  magnitude: '#59a14f', // green
  random: '#79706e', // grey
  'block-influence': '#b07aa1', // purple
};

/** Colours for other (plugin) criteria, picked by a hash of the name: none of the built-ins'. */
const PLUGIN_COLORS = [
  '#76b7b2', // teal
  '#9c755f', // brown
  '#ff9da7', // pink
  '#edc948', // yellow
  '#17becf', // cyan
  '#8c564b', // dark brown
  '#bcbd22', // olive
  '#1b5e20', // dark green
  '#5c4d99', // indigo
  '#d37295', // rose
] as const;

/** FNV-1a over the name's UTF-16 code units: the same number on every machine and run. */
function hash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A criterion's colour: fixed for the built-ins, a stable hash of the name for plugins. */
export function criterionColor(name: string): string {
  return BUILTIN_COLORS[name] ?? PLUGIN_COLORS[hash(name) % PLUGIN_COLORS.length]!;
}

/** A Vega-Lite colour scale over these criteria, each with its own colour (criterionColor). */
export function criterionColorScale(criteria: readonly string[]): { domain: string[]; range: string[] } {
  return { domain: [...criteria], range: criteria.map(criterionColor) };
}

/**
 * A [lo, 1] axis for values in [0, 1] (IoU, correlations) fitted to the data: it starts a little
 * below the smallest value, on a round step (0.1, 0.05, 0.01, 0.005 or 0.001, the largest that still
 * leaves the spread visible), and at 0 only when the data come near it. So IoUs of 0.97-1.0 span the
 * axis instead of being bars of equal height.
 */
export function fittedUnitDomain(values: readonly number[]): [number, number] {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return [0, 1];
  const min = Math.min(...finite);
  const spread = Math.max(1 - min, 0.002);
  for (const step of [0.1, 0.05, 0.01, 0.005, 0.001]) {
    // The margin below the smallest value is a fifth of the spread or more, on the step grid.
    const lo = Math.floor((min - spread / 5) / step) * step;
    if (1 - lo <= spread * 3 || step === 0.001) return [Math.max(0, Number(lo.toFixed(3))), 1];
  }
  return [0, 1];
}

/**
 * Decimals that print every distinct value of a column differently (at least `min`, at most `max`),
 * and never round a value below 1 up to "1.000": correlations of 0.99991 and 0.99996 read as such.
 */
export function distinguishingDecimals(values: readonly number[], min = 3, max = 7): number {
  const finite = [...new Set(values.filter((v) => Number.isFinite(v)))];
  for (let d = min; d < max; d++) {
    const seen = new Map<string, number>();
    let ok = true;
    for (const v of finite) {
      const s = v.toFixed(d);
      const other = seen.get(s);
      if ((other !== undefined && other !== v) || (v !== 1 && s === (1).toFixed(d))) {
        ok = false;
        break;
      }
      seen.set(s, v);
    }
    if (ok) return d;
  }
  return max;
}
