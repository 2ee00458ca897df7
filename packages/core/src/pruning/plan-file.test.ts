import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type PruningPlan, planToJSON } from './plan.js';
import { readPlanFile, readPlanLines, writePlanFile } from './plan-file.js';

const dir = mkdtempSync(path.join(tmpdir(), 'moreau-plan-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const masks: PruningPlan = {
  format: 'moreau-pruning-plan',
  version: 2,
  scope: 'unstructured',
  criterion: { name: 'magnitude', options: { p: 2 } },
  ratio: 0.5,
  attnLayers: [0, 2],
  mlpLayers: [0, 2],
  keepLowRatio: 0,
  seed: 1,
  steps: 1,
  model: { numLayers: 2, params: 100 },
  settings: { preset: 'x' },
  groups: [],
  masks: [
    { param: 'a', shape: [3, 5], zeroed: Uint8Array.from([1, 2]) },
    { param: 'b', shape: [1, 2], salience: Float32Array.from([1.5, -2]) },
  ],
};
const blocks: PruningPlan = {
  ...masks,
  scope: 'block',
  ranking: 'local',
  reduction: 'sum',
  keepLowRatio: undefined,
  masks: [],
  groups: [
    { group: { kind: 'attention', layer: 0 }, total: 4, kept: [0, 2] },
    { group: { kind: 'mlp', layer: 1 }, total: 3, kept: [1], scores: [0.5, 2, null] },
  ],
};

describe('plan files', () => {
  it.each([
    ['masks', masks],
    ['groups', blocks],
  ])('write chunk by chunk; read whole or line by line to the same plan (%s)', async (name, plan) => {
    const file = path.join(dir, `${name}.json`);
    await writePlanFile(file, plan);
    expect(readFileSync(file, 'utf8')).toBe(planToJSON(plan));
    const whole = await readPlanFile(file);
    const lines = await readPlanLines(file);
    expect(planToJSON(lines)).toBe(planToJSON(whole));
    expect(planToJSON(whole)).toBe(planToJSON(plan));
  });

  it('a large file in another layout is refused, naming the file', async () => {
    const file = path.join(dir, 'compact.json');
    writeFileSync(file, JSON.stringify(JSON.parse(planToJSON(masks))));
    await expect(readPlanLines(file)).rejects.toThrow(
      /compact\.json: too large to parse as one string, and not in the layout moreau writes/,
    );
    await expect(readPlanFile(path.join(dir, 'none.json'))).rejects.toThrow(/plan '.*none\.json' not found/);
  });

  it('line by line, the usual validation still names the field', async () => {
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, planToJSON(masks).replace('"zeroed":"AQI="', '"zeroed":"AQ=="'));
    await expect(readPlanLines(file)).rejects.toThrow(
      /bad\.json: field 'masks\[0\]\.zeroed' must be base64 of 2 bytes/,
    );
  });
});
