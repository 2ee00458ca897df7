import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.js';
import {
  PLAN_FORMAT,
  PLAN_VERSION,
  type PruningPlan,
  parsePlan,
  planToJSON,
  planToJSONChunks,
} from './plan.js';

/** A version-1 plan as today's CLI wrote it before version 2. */
const V1 = {
  format: 'moreau-pruning-plan',
  version: 1,
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
      mlp: { total: 5, kept: [0, 1, 2, 3], scores: [4, 3, 2, 1, null] },
    },
    { layer: 2, attention: { total: 4, kept: [0, 1, 3] }, mlp: { total: 5, kept: [1, 2, 3, 4] } },
  ],
};

/** A version-2 block plan. */
const block: PruningPlan = {
  format: PLAN_FORMAT,
  version: PLAN_VERSION,
  scope: 'block',
  criterion: {
    name: 'moreau-gs',
    options: { iterations: 10, noiseStd: 0.05, proximal: 'reference', fresh: true },
  },
  reduction: 'sum',
  ratio: 0.2,
  ranking: 'global-pool',
  attnLayers: [1, 3],
  mlpLayers: [0, 3],
  seed: 42,
  steps: 2,
  model: { numLayers: 4, params: 1234 },
  settings: {
    preset: 'moreaupruner',
    calibration: { sampling: 'patches', samples: 4 },
    computeDtype: 'float32',
  },
  groups: [
    { group: { kind: 'mlp', layer: 0 }, total: 5, kept: [0, 2, 3, 4] },
    { group: { kind: 'attention', layer: 1 }, total: 4, kept: [1, 2, 3], scores: [0.5, 1.25e-7, 3, 2] },
    { group: { kind: 'mlp', layer: 1 }, total: 5, kept: [0, 1, 2, 3], scores: [4, 3, 2, 1, null] },
  ],
  masks: [],
};

/** A version-2 unstructured plan: one matrix as a bitset, one as salience. */
const unstructured: PruningPlan = {
  format: PLAN_FORMAT,
  version: PLAN_VERSION,
  scope: '2:4',
  criterion: { name: 'magnitude', options: { p: 2 } },
  ratio: 0,
  attnLayers: [0, 1],
  mlpLayers: [0, 0],
  keepLowRatio: 0,
  seed: 1,
  steps: 1,
  model: { numLayers: 1, params: 40 },
  groups: [],
  masks: [
    { param: 'a', shape: [2, 4], zeroed: Uint8Array.from([0b10100101]) },
    { param: 'b', shape: [1, 4], salience: Float32Array.from([0.5, -2, 0, 1]) },
  ],
};

describe('plan JSON (version 2)', () => {
  it('is stable: header fields one per line, one group per line, settings with sorted keys', () => {
    expect(planToJSON(block)).toBe(
      [
        '{',
        '  "format": "moreau-pruning-plan",',
        '  "version": 2,',
        '  "scope": "block",',
        '  "criterion": {"name":"moreau-gs","options":{"iterations":10,"noiseStd":0.05,"proximal":"reference","fresh":true}},',
        '  "reduction": "sum",',
        '  "ratio": 0.2,',
        '  "ranking": "global-pool",',
        '  "attnLayers": [1,3],',
        '  "mlpLayers": [0,3],',
        '  "seed": 42,',
        '  "steps": 2,',
        '  "model": {"numLayers":4,"params":1234},',
        '  "settings": {"calibration":{"samples":4,"sampling":"patches"},"computeDtype":"float32","preset":"moreaupruner"},',
        '  "groups": [',
        '    {"group":{"kind":"mlp","layer":0},"total":5,"kept":[0,2,3,4]},',
        '    {"group":{"kind":"attention","layer":1},"total":4,"kept":[1,2,3],"scores":[0.5,1.25e-7,3,2]},',
        '    {"group":{"kind":"mlp","layer":1},"total":5,"kept":[0,1,2,3],"scores":[4,3,2,1,null]}',
        '  ],',
        '  "masks": []',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('masks are base64: a bitset (LSB first) or little-endian float32 salience', () => {
    const json = planToJSON(unstructured);
    expect(json).toContain('    {"param":"a","shape":[2,4],"zeroed":"pQ=="},\n');
    expect(json).toContain(
      `{"param":"b","shape":[1,4],"salience":"${Buffer.from(unstructured.masks[1]!.salience!.buffer).toString('base64')}"}`,
    );
    expect(json).toContain('  "keepLowRatio": 0,\n');
    expect(json).not.toContain('"ranking"');
    expect(json).not.toContain('"reduction"');
  });

  it.each([
    ['block', block],
    ['2:4', unstructured],
  ])('round-trips (%s): parsePlan(planToJSON(p)) equals p and re-serialises byte for byte', (_, plan) => {
    const json = planToJSON(plan);
    const back = parsePlan(json, 'plan.json');
    expect(planToJSON(back)).toBe(json);
    expect({ ...back, settings: undefined }).toEqual({ ...plan, settings: undefined });
  });

  it('key order of the input does not matter; the chunks join to the same text', () => {
    const shuffled = JSON.stringify(
      Object.fromEntries(Object.entries(JSON.parse(planToJSON(block))).reverse()),
    );
    expect(planToJSON(parsePlan(shuffled))).toBe(planToJSON(block));
    expect([...planToJSONChunks(block)].join('')).toBe(planToJSON(block));
  });

  it('channel and keep-first layer plans carry only their own fields', () => {
    const channel: PruningPlan = {
      ...block,
      scope: 'channel',
      ratio: 0.5,
      ranking: undefined,
      attnLayers: undefined,
      mlpLayers: undefined,
      settings: undefined,
      groups: [{ group: { kind: 'hidden' }, total: 6, kept: [0, 2, 5] }],
    };
    const text = planToJSON(channel);
    expect(text).toContain('    {"group":{"kind":"hidden"},"total":6,"kept":[0,2,5]}\n');
    expect(text).not.toMatch(/ranking|attnLayers|settings/);
    expect(planToJSON(parsePlan(text))).toBe(text);
    const layers: PruningPlan = {
      ...block,
      scope: 'layer',
      criterion: null,
      reduction: undefined,
      ranking: undefined,
      ratio: 0.5,
      keepFirst: 2,
      attnLayers: [0, 4],
      mlpLayers: [0, 4],
      settings: undefined,
      groups: [0, 1, 2, 3].map((l) => ({
        group: { kind: 'layer', layer: l },
        total: 1,
        kept: l < 2 ? [0] : [],
      })),
    };
    const ltext = planToJSON(layers);
    expect(ltext).toContain('  "criterion": null,\n');
    expect(ltext).toContain('    {"group":{"kind":"layer","layer":3},"total":1,"kept":[]}\n');
    expect(planToJSON(parsePlan(ltext))).toBe(ltext);
  });
});

describe('version-1 plans', () => {
  it('load as the version-2 block plan they mean (global ranking = global-per-kind)', () => {
    const p = parsePlan(JSON.stringify(V1), 'old.json');
    expect(p).toEqual({
      format: PLAN_FORMAT,
      version: 2,
      scope: 'block',
      criterion: V1.criterion,
      reduction: 'sum',
      ratio: 0.2,
      ranking: 'local',
      attnLayers: [1, 3],
      mlpLayers: [0, 3],
      seed: 42,
      steps: 2,
      model: { numLayers: 4 },
      groups: [
        { group: { kind: 'mlp', layer: 0 }, total: 5, kept: [0, 2, 3, 4] },
        { group: { kind: 'attention', layer: 1 }, total: 4, kept: [1, 2, 3], scores: [0.5, 1.25e-7, 3, 2] },
        { group: { kind: 'mlp', layer: 1 }, total: 5, kept: [0, 1, 2, 3], scores: [4, 3, 2, 1, null] },
        { group: { kind: 'attention', layer: 2 }, total: 4, kept: [0, 1, 3] },
        { group: { kind: 'mlp', layer: 2 }, total: 5, kept: [1, 2, 3, 4] },
      ],
      masks: [],
    });
    expect(parsePlan(JSON.stringify({ ...V1, scope: 'global' })).ranking).toBe('global-per-kind');
  });
});

describe('version-2 plan errors name the file and the field', () => {
  const base = () => JSON.parse(planToJSON(block)) as Record<string, any>;
  const ubase = () => JSON.parse(planToJSON(unstructured)) as Record<string, any>;
  const cases: [string, () => unknown, string, RegExp][] = [
    ['scope', () => ({ ...base(), scope: 'rows' }), 'scope', /unknown scope 'rows'/],
    ['N:M with N >= M', () => ({ ...ubase(), scope: '4:4' }), 'scope', /N:M needs 1 <= N < M/],
    [
      'ranking',
      () => ({ ...base(), ranking: 'global' }),
      'ranking',
      /must be one of local, global-per-kind, global-pool/,
    ],
    ['ranking on 2:4', () => ({ ...ubase(), ranking: 'local' }), 'ranking', /is not used by scope 2:4/],
    ['reduction on 2:4', () => ({ ...ubase(), reduction: 'sum' }), 'reduction', /is not used by scope 2:4/],
    [
      'keepLowRatio on block',
      () => ({ ...base(), keepLowRatio: 0.1 }),
      'keepLowRatio',
      /element scopes only/,
    ],
    ['keepLowRatio 1', () => ({ ...ubase(), keepLowRatio: 1 }), 'keepLowRatio', /\[0, 1\)/],
    ['keepFirst on block', () => ({ ...base(), keepFirst: 2 }), 'keepFirst', /layer scope only/],
    ['criterion null', () => ({ ...base(), criterion: null }), 'criterion', /must be \{name, options\}/],
    ['model', () => ({ ...base(), model: 4 }), 'model', /must be \{numLayers, params\?\}/],
    [
      'model.numLayers',
      () => ({ ...base(), model: { numLayers: 0 } }),
      'model.numLayers',
      /positive integer/,
    ],
    ['attnLayers', () => ({ ...base(), attnLayers: [0, 5] }), 'attnLayers', /0 <= start <= end <= 4/],
    ['settings', () => ({ ...base(), settings: [1] }), 'settings', /must be an object/],
    ['groups', () => ({ ...base(), groups: {} }), 'groups', /must be an array/],
    [
      'group kind for the scope',
      () => ({ ...base(), groups: [{ group: { kind: 'hidden' }, total: 4, kept: [0] }] }),
      'groups[0].group.kind',
      /must be attention or mlp for scope block/,
    ],
    [
      'group layer outside its range',
      () => ({ ...base(), groups: [{ group: { kind: 'attention', layer: 0 }, total: 4, kept: [0] }] }),
      'groups[0].group.layer',
      /is 0, outside the attention layer range \[1, 3\)/,
    ],
    [
      'repeated group',
      () => ({ ...base(), groups: [base().groups[0], base().groups[0]] }),
      'groups[1]',
      /repeats group layer 0 mlp/,
    ],
    [
      'kept empty',
      () => ({ ...base(), groups: [{ group: { kind: 'mlp', layer: 0 }, total: 4, kept: [] }] }),
      'groups[0].kept',
      /must be a non-empty array/,
    ],
    [
      'masks on a block plan',
      () => ({ ...base(), masks: ubase().masks }),
      'masks',
      /must be empty for scope block/,
    ],
    [
      'mask with both',
      () => ({ ...ubase(), masks: [{ ...ubase().masks[0], salience: 'AAAA' }] }),
      'masks[0]',
      /exactly one of 'zeroed' \(a bitset\) and 'salience'/,
    ],
    [
      'bitset length',
      () => ({ ...ubase(), masks: [{ ...ubase().masks[0], zeroed: 'pQA=' }] }),
      'masks[0].zeroed',
      /must be base64 of 1 bytes/,
    ],
    [
      'not base64',
      () => ({ ...ubase(), masks: [{ ...ubase().masks[0], zeroed: 'p!==' }] }),
      'masks[0].zeroed',
      /must be base64/,
    ],
    [
      'shape',
      () => ({ ...ubase(), masks: [{ ...ubase().masks[0], shape: [8] }] }),
      'masks[0].shape',
      /must be \[rows, cols\]/,
    ],
  ];
  it.each(cases)('%s', (_, make, field, message) => {
    let err: unknown;
    try {
      parsePlan(JSON.stringify(make()), 'runs/plan.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    const e = err as InputError;
    expect(e.field).toBe(field);
    expect(e.message.startsWith(`runs/plan.json: field '${field}' `)).toBe(true);
    expect(e.message).toMatch(message);
  });
});

describe('version-1 plan errors name the file and the field', () => {
  const base = () => structuredClone(V1) as Record<string, any>;
  const cases: [string, (p: Record<string, any>) => unknown, string, RegExp][] = [
    ['format', (p) => ({ ...p, format: 'something-else' }), 'format', /must be 'moreau-pruning-plan'/],
    [
      'version',
      (p) => ({ ...p, version: 3 }),
      'version',
      /must be 1 or 2 \(this SDK's plan versions\), got 3/,
    ],
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
