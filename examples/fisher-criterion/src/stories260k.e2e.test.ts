/**
 * The example plugin on a real model: prune() with 'fisher' on stories260K (onnxruntime) produces
 * a valid plan that follows the rounding rule and re-applies to the same weights.
 * Reads ../shared (or MOREAU_SHARED) and skips with a message when the files are absent.
 */
import { readFileSync } from 'node:fs';
import { createOrtBackend } from '@moreau/backend-ort';
import {
  applyPlan,
  countParams,
  getCriterion,
  parsePlan,
  planToJSON,
  prune,
  sampleCalibration,
} from '@moreau/core';
import { LlamaModel } from '@moreau/models';
import { haveStories260k, loadStories260k, sharedPath, TINYSTORIES_HEAD } from '@moreau/test-utils';
import { describe, expect, it } from 'vitest';
import './index.js';

const HAVE = haveStories260k('fisher plugin stories260K test', TINYSTORIES_HEAD);

describe.skipIf(!HAVE)('fisher plugin on stories260K', () => {
  it('prune() with the plugin criterion produces a valid plan', async () => {
    const { ckpt, tok } = await loadStories260k();
    const ids = tok.encode(readFileSync(sharedPath(TINYSTORIES_HEAD), 'utf8').slice(0, 200_000), {
      bos: true,
    });
    const model = new LlamaModel(ckpt.config, ckpt.tensors);
    const backend = await createOrtBackend({ intraOpNumThreads: 2 });
    try {
      const calibration = sampleCalibration(ids, { samples: 4, seqLen: 128, seed: 1 });
      const t0 = performance.now();
      const { plan, model: pruned } = await prune(model, {
        criterion: getCriterion('fisher'),
        ratio: 0.2,
        calibration,
        backend,
      });
      console.log(`fisher on stories260K (${backend.name}): ${(performance.now() - t0).toFixed(0)} ms`);
      const json = planToJSON(plan);
      const back = parsePlan(json, 'fisher.plan.json');
      expect(planToJSON(back)).toBe(json);
      expect(back.criterion).toEqual({ name: 'fisher', options: { windows: 0 } });
      for (const d of back.groups) {
        // floor(4 * 0.8) KV groups, floor(172 * 0.8) MLP channels
        expect(d.kept).toHaveLength(d.group.kind === 'attention' ? 3 : 137);
      }
      expect(countParams(pruned.params)).toBe(211_072);
      const again = applyPlan(model, back);
      for (const [k, t] of pruned.params) expect([...again.params.get(k)!.data], k).toEqual([...t.data]);
    } finally {
      await backend.dispose();
    }
  }, 120_000);
});
