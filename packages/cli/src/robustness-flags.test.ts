import '@moreau/criteria';
import { describe, expect, it } from 'vitest';
import { criteriaOptions, perturbFlag, sweepFlags, UsageError } from './internal/flags.js';

const criteria = (names: string[], opt: string[] = []) => criteriaOptions(names, opt);

describe('robustness flags', () => {
  it('--perturb: canonical names for every kind; typos, duplicates and a second seed:K are usage errors', () => {
    expect(perturbFlag('fp16,bfloat16,gauss:0.01x3,compute:fp16,compute:bfloat16,seed:3,calib:2')).toEqual([
      'fp16',
      'bf16',
      'gauss:0.01x3',
      'compute:float16',
      'compute:bfloat16',
      'seed:3',
      'calib:2',
    ]);
    expect(perturbFlag('seed:0')).toEqual(['seed:0']);
    const usage = (value: string, message: RegExp) => {
      expect(() => perturbFlag(value)).toThrow(UsageError);
      expect(() => perturbFlag(value)).toThrow(message);
    };
    usage('compute:float32', /^--perturb: perturbation 'compute:float32': float32 compute is the reference/);
    usage(
      'compute:half',
      /^--perturb: perturbation 'compute:half': the compute dtype must be float16 or bfloat16/,
    );
    usage('seed:x', /^--perturb: perturbation 'seed:x': K must be an integer >= 0/);
    usage('calib:0', /^--perturb: perturbation 'calib:0': K must be an integer >= 1/);
    usage('salt', /^--perturb: unknown perturbation 'salt'; valid: fp16, bf16/);
    usage('bf16,bfloat16', /^--perturb: 'bf16' is listed twice in 'bf16,bfloat16'/);
    usage('compute:bf16,compute:bfloat16', /^--perturb: 'compute:bfloat16' is listed twice/);
    usage('seed:2,seed:3', /^--perturb: list one seed:K, got 'seed:2,seed:3'/);
    usage(',', /^--perturb needs a comma-separated list/);
  });

  it('--sweep: axes with converted values, in order', () => {
    expect(
      sweepFlags(
        ['lr=2e-4,2e-3,2e-2', 'iterations=10,30', 'noiseStd=0,0.05,0.1'],
        criteria(['taylor', 'moreau', 'moreau-gs']),
      ),
    ).toEqual([
      { key: 'lr', values: [2e-4, 2e-3, 2e-2] },
      { key: 'iterations', values: [10, 30] },
      { key: 'noiseStd', values: [0, 0.05, 0.1] },
    ]);
    expect(sweepFlags(['soft=0,5e-6'], criteria(['moreau', 'moreau-gs']))).toEqual([
      { key: 'soft', values: [0, 5e-6] },
    ]);
    expect(sweepFlags(['freshCalibration=true,false'], criteria(['moreau']))).toEqual([
      { key: 'freshCalibration', values: [true, false] },
    ]);
    expect(sweepFlags([], criteria(['taylor']))).toEqual([]);
  });

  it('--sweep: every mistake is a usage error naming the flag and the key', () => {
    const usage = (pairs: string[], names: string[], message: RegExp, opt: string[] = []) => {
      const f = () => sweepFlags(pairs, criteria(names, opt), opt);
      expect(f).toThrow(UsageError);
      expect(f).toThrow(message);
    };
    usage(['lr'], ['moreau'], /^--sweep expects NAME=VALUE, got 'lr'/);
    usage(['lr=1', 'lr=2'], ['moreau'], /^--sweep lr: the option is swept twice/);
    usage(
      ['lr=1'],
      ['taylor', 'magnitude'],
      /^--sweep lr: none of taylor, magnitude has this option; valid: variant, p/,
    );
    usage(['lr=abc'], ['moreau'], /^--sweep lr=abc: .*lr/);
    usage(['lr=-1'], ['moreau'], /^--sweep lr=-1: .*lr/);
    usage(['iterations=2.5'], ['moreau'], /^--sweep iterations=2\.5: .*iterations/);
    usage(['perturb=all,some'], ['moreau'], /^--sweep perturb=some: .*perturb/);
    usage(['lr=1,,2'], ['moreau'], /^--sweep lr: empty value in '1,,2'/);
    usage(['lr=0.1,1e-1'], ['moreau'], /^--sweep lr: the value '1e-1' is listed twice/);
    usage(['lr=1,2'], ['moreau'], /^--sweep lr: also set with --opt lr=\.\.\.; drop one/, ['lr=3']);
  });
});
