import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import { keptFromPlan, PLAN_FORMAT, PLAN_VERSION, type PruningPlan, parsePlan, planToJSON } from './plan.js';

const plan: PruningPlan = {
  format: PLAN_FORMAT,
  version: PLAN_VERSION,
  criterion: {
    name: 'moreau-gs',
    options: { iterations: 10, noiseStd: 0.05, proximal: 'reference', fresh: true },
  },
  reduction: 'sum',
  ratio: 0.2,
  seed: 42,
  scope: 'local',
  attnLayers: [1, 3],
  mlpLayers: [0, 3],
  steps: 2,
  numLayers: 4,
  layers: [
    { layer: 0, mlp: { total: 5, kept: [0, 2, 3, 4] } },
    {
      layer: 1,
      attention: { total: 4, kept: [1, 2, 3], scores: [0.5, 1.25e-7, 3, 2] },
      mlp: { total: 5, kept: [0, 1, 2, 3], scores: [4, 3, 2, 1, null as unknown as number] },
    },
    { layer: 2, attention: { total: 4, kept: [0, 1, 3] }, mlp: { total: 5, kept: [1, 2, 3, 4] } },
  ],
};

describe('plan JSON', () => {
  it('is stable: fixed key order, one layer per line', () => {
    const json = planToJSON(plan);
    expect(json).toBe(
      [
        '{',
        '  "format": "moreau-pruning-plan",',
        '  "version": 1,',
        '  "criterion": {',
        '    "name": "moreau-gs",',
        '    "options": {',
        '      "iterations": 10,',
        '      "noiseStd": 0.05,',
        '      "proximal": "reference",',
        '      "fresh": true',
        '    }',
        '  },',
        '  "reduction": "sum",',
        '  "ratio": 0.2,',
        '  "seed": 42,',
        '  "scope": "local",',
        '  "attnLayers": [',
        '    1,',
        '    3',
        '  ],',
        '  "mlpLayers": [',
        '    0,',
        '    3',
        '  ],',
        '  "steps": 2,',
        '  "numLayers": 4,',
        '  "layers": [',
        '    {"layer":0,"mlp":{"total":5,"kept":[0,2,3,4]}},',
        '    {"layer":1,"attention":{"total":4,"kept":[1,2,3],"scores":[0.5,1.25e-7,3,2]},"mlp":{"total":5,"kept":[0,1,2,3],"scores":[4,3,2,1,null]}},',
        '    {"layer":2,"attention":{"total":4,"kept":[0,1,3]},"mlp":{"total":5,"kept":[1,2,3,4]}}',
        '  ]',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('round-trips: parsePlan(planToJSON(p)) equals p and re-serialises byte for byte', () => {
    const json = planToJSON(plan);
    const back = parsePlan(json, 'plan.json');
    expect(back).toEqual(plan);
    expect(planToJSON(back)).toBe(json);
  });

  it('key order of the input does not matter', () => {
    const shuffled = JSON.stringify(Object.fromEntries(Object.entries(plan).reverse()));
    expect(planToJSON(parsePlan(shuffled))).toBe(planToJSON(plan));
  });

  it('an empty layer list round-trips', () => {
    const empty = { ...plan, attnLayers: [0, 0] as const, mlpLayers: [0, 0] as const, layers: [] };
    expect(parsePlan(planToJSON(empty))).toEqual(empty);
  });

  it('keptFromPlan maps group ids to kept units', () => {
    expect([...keptFromPlan(plan)]).toEqual([
      ['layer.0.mlp', [0, 2, 3, 4]],
      ['layer.1.attention', [1, 2, 3]],
      ['layer.1.mlp', [0, 1, 2, 3]],
      ['layer.2.attention', [0, 1, 3]],
      ['layer.2.mlp', [1, 2, 3, 4]],
    ]);
  });
});

describe('parsePlan errors name the file and the field', () => {
  const base = () => JSON.parse(planToJSON(plan)) as Record<string, any>;
  const cases: [string, (p: Record<string, any>) => unknown, string, RegExp][] = [
    ['format', (p) => ({ ...p, format: 'something-else' }), 'format', /must be 'moreau-pruning-plan'/],
    ['version', (p) => ({ ...p, version: 2 }), 'version', /must be 1 \(this SDK's plan version\), got 2/],
    ['no criterion', (p) => ({ ...p, criterion: undefined }), 'criterion', /must be \{name, options\}/],
    [
      'criterion options null',
      (p) => ({ ...p, criterion: { name: 'x', options: null } }),
      'criterion',
      /\{name, options\}/,
    ],
    [
      'reduction',
      (p) => ({ ...p, reduction: 'median' }),
      'reduction',
      /must be one of sum, mean, max, prod, first/,
    ],
    ['ratio 1', (p) => ({ ...p, ratio: 1 }), 'ratio', /must be a number in \[0, 1\)/],
    ['ratio string', (p) => ({ ...p, ratio: '0.2' }), 'ratio', /\[0, 1\)/],
    ['seed', (p) => ({ ...p, seed: 1.5 }), 'seed', /must be an integer/],
    ['steps', (p) => ({ ...p, steps: 0 }), 'steps', /must be a positive integer/],
    ['no steps', (p) => ({ ...p, steps: undefined }), 'steps', /must be a positive integer/],
    ['scope', (p) => ({ ...p, scope: 'all' }), 'scope', /must be 'local' or 'global'/],
    ['numLayers', (p) => ({ ...p, numLayers: 0 }), 'numLayers', /must be a positive integer/],
    [
      'attnLayers',
      (p) => ({ ...p, attnLayers: [0, 5] }),
      'attnLayers',
      /must be \[start, end\) with 0 <= start <= end <= 4/,
    ],
    ['mlpLayers reversed', (p) => ({ ...p, mlpLayers: [3, 1] }), 'mlpLayers', /\[start, end\)/],
    ['layers', (p) => ({ ...p, layers: {} }), 'layers', /must be an array/],
    ['layer entry', (p) => ({ ...p, layers: [null] }), 'layers[0]', /must be an object/],
    [
      'layer index',
      (p) => ({ ...p, layers: [{ ...p.layers[0], layer: 4 }] }),
      'layers[0].layer',
      /must be in \[0, 4\)/,
    ],
    [
      'duplicate layer',
      (p) => ({ ...p, layers: [p.layers[1], { ...p.layers[2], layer: 1 }] }),
      'layers[1].layer',
      /repeats layer 1/,
    ],
    [
      'attention outside attnLayers',
      (p) => ({ ...p, layers: [{ layer: 0, attention: { total: 4, kept: [0] } }] }),
      'layers[0].attention',
      /is for layer 0, outside attnLayers \[1, 3\)/,
    ],
    [
      'decision not an object',
      (p) => ({ ...p, layers: [{ layer: 1, mlp: 3 }] }),
      'layers[0].mlp',
      /must be an object \{total, kept, scores\?\}/,
    ],
    [
      'total',
      (p) => ({ ...p, layers: [{ layer: 1, mlp: { total: 0, kept: [0] } }] }),
      'layers[0].mlp.total',
      /must be a positive integer/,
    ],
    [
      'kept empty',
      (p) => ({ ...p, layers: [{ layer: 1, mlp: { total: 5, kept: [] } }] }),
      'layers[0].mlp.kept',
      /must be a non-empty array/,
    ],
    [
      'kept out of range',
      (p) => ({ ...p, layers: [{ layer: 2, mlp: { total: 5, kept: [1, 5] } }] }),
      'layers[0].mlp.kept',
      /must hold ascending unique integers in \[0, 5\)/,
    ],
    [
      'kept not ascending',
      (p) => ({ ...p, layers: [{ layer: 2, attention: { total: 4, kept: [2, 1] } }] }),
      'layers[0].attention.kept',
      /ascending unique/,
    ],
    [
      'kept duplicate',
      (p) => ({ ...p, layers: [{ layer: 2, attention: { total: 4, kept: [1, 1] } }] }),
      'layers[0].attention.kept',
      /ascending unique/,
    ],
    [
      'scores length',
      (p) => ({ ...p, layers: [{ layer: 2, attention: { total: 4, kept: [1], scores: [1, 2] } }] }),
      'layers[0].attention.scores',
      /must be 4 numbers/,
    ],
  ];
  it.each(cases)('%s', (_, mutate, field, message) => {
    let err: unknown;
    try {
      parsePlan(JSON.stringify(mutate(base())), 'runs/plan.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    const e = err as InputError;
    expect(e.file).toBe('runs/plan.json');
    expect(e.field).toBe(field);
    expect(e.message.startsWith(`runs/plan.json: field '${field}' `)).toBe(true);
    expect(e.message).toMatch(message);
  });

  it('not JSON, or not an object', () => {
    expect(() => parsePlan('{"format":', 'p.json')).toThrow(/^p\.json: not valid JSON \(/);
    expect(() => parsePlan('[1, 2]', 'p.json')).toThrow("p.json: field '(root)' must be an object");
    expect(() => parsePlan('null', 'p.json')).toThrow("p.json: field '(root)' must be an object");
    expect(() => parsePlan('null')).toThrow(/^<plan>: /);
  });
});
