/**
 * Rounding float32 values to float16 / bfloat16 precision on the device (tfjs has neither type).
 * The result is a float32 tensor whose values are exactly representable in the half type, rounded
 * to nearest, ties to even, exactly as core's host conversions (float32ToFloat16Bits) do.
 *
 * Method: with e = floor(log2|x|) (clamped below at the type's minimum normal exponent, which
 * makes subnormals round on their fixed grid), y = x * 2^-e lies in (-2, 2); adding and
 * subtracting M = 1.5 * 2^(23-p) (p = stored mantissa bits; ulp(M) = 2^-p) rounds y to a multiple of 2^-p with the
 * float32 unit's own round-to-nearest-even; scaling back by 2^e is exact. log2 may be off by one
 * next to powers of two, so e is corrected against 2^e. Every step is a separate float32 tensor op,
 * so no engine can fuse or widen the intermediate.
 */
import * as tf from '@tensorflow/tfjs-core';

interface HalfFormat {
  /** Stored mantissa bits. */
  readonly mantissa: number;
  /** Minimum normal exponent. */
  readonly minExp: number;
  /** Largest finite value, or undefined when overflow already yields inf in float32. */
  readonly maxFinite?: number;
  /** Clip |x| to this first (maps inf to a value that rounds to inf; keeps exponents finite). */
  readonly clip: number;
}

const FLOAT16: HalfFormat = { mantissa: 10, minExp: -14, maxFinite: 65504, clip: 131072 };
const BFLOAT16: HalfFormat = { mantissa: 7, minExp: -126, clip: 3.4028234663852886e38 };

function roundTo(x: tf.Tensor, f: HalfFormat): tf.Tensor {
  return tf.tidy(() => {
    const xc = tf.clipByValue(x, -f.clip, f.clip);
    const a = tf.abs(xc);
    const e0 = tf.floor(tf.mul(tf.log(a), Math.LOG2E));
    const two = tf.scalar(2);
    const p = tf.pow(two, e0);
    // e = e0 - (2^e0 > a) + (2^(e0+1) <= a)
    const down = tf.cast(tf.greater(p, a), 'float32');
    const up = tf.cast(tf.lessEqual(tf.mul(p, 2), a), 'float32');
    const e = tf.maximum(tf.add(tf.sub(e0, down), up), f.minExp);
    const y = tf.mul(xc, tf.pow(two, tf.neg(e)));
    const m = tf.scalar(1.5 * 2 ** (23 - f.mantissa));
    const r = tf.sub(tf.add(y, m), m);
    let out = tf.mul(r, tf.pow(two, e));
    if (f.maxFinite !== undefined) {
      const inf = tf.mul(tf.sign(xc), Number.POSITIVE_INFINITY);
      out = tf.where(tf.greater(tf.abs(out), f.maxFinite), inf, out);
    }
    // log(0) = -inf makes e0 = -inf; the clamp above already fixed e, and y = 0 stays 0.
    // Tiny negatives round to -0 (x * 0 keeps the sign); some engines' clip turns NaN into a
    // bound: put NaN back explicitly.
    out = tf.where(tf.equal(out, 0), tf.mul(xc, 0), out);
    return tf.where(tf.isNaN(x), x, out);
  });
}

export function roundToFloat16(x: tf.Tensor): tf.Tensor {
  return roundTo(x, FLOAT16);
}

export function roundToBfloat16(x: tf.Tensor): tf.Tensor {
  return roundTo(x, BFLOAT16);
}
