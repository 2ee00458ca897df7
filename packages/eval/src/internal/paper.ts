/**
 * The metric each zero-shot task contributes to the papers' tables (LLM-Pruner Table 1 and
 * MoreauPruner's, which copies its columns): acc for BoolQ, WinoGrande and ARC-easy; acc_norm for
 * PIQA, HellaSwag, ARC-challenge and OpenBookQA. Their "Average" is the mean of those seven numbers.
 */
export const PAPER_METRICS: Readonly<Record<string, 'acc' | 'acc_norm'>> = {
  boolq: 'acc',
  piqa: 'acc_norm',
  hellaswag: 'acc_norm',
  winogrande: 'acc',
  arc_easy: 'acc',
  arc_challenge: 'acc_norm',
  openbookqa: 'acc_norm',
};

/** The paper's number for one task's scores, or null for tasks outside the papers' tables. */
export function paperScore(task: string, scores: { acc: number; acc_norm: number | null }): number | null {
  const metric = PAPER_METRICS[task];
  if (!metric) return null;
  return metric === 'acc' ? scores.acc : scores.acc_norm;
}

/**
 * The mean of the paper numbers of the tasks evaluated (null when none is a paper task), and how
 * many tasks it averages (the papers average all seven).
 */
export function paperAverage(tasks: Readonly<Record<string, { acc: number; acc_norm: number | null }>>): {
  readonly average: number | null;
  readonly tasks: number;
} {
  const values = Object.entries(tasks)
    .map(([name, s]) => paperScore(name, s))
    .filter((v): v is number => v !== null);
  return {
    average: values.length ? values.reduce((a, b) => a + b, 0) / values.length : null,
    tasks: values.length,
  };
}
