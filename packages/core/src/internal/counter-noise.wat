;; The counter-based normal generator as a WebAssembly SIMD kernel: four pairs (eight normals) per
;; iteration. It performs exactly the integer and float32 operations of counter-noise-ref.ts, in
;; the same order (WebAssembly has no fused multiply-add here and never reassociates), so both give
;; the same bits. Keep the two in step. The bytes embedded in counter-noise-wasm-bytes.ts are
;; generated from this file by packages/core/scripts/noise-wasm.ts (a test checks they match).
;;
;; Both functions compute pairs j0 .. j0 + 4 n4 - 1 of the stream with key words k0..k3,
;; j0 = hi * 2^32 + lo; element 2k + c of their block belongs to pair j0 + k (c = 0: r cos, 1: r sin).
;; The normals are computed by the same block of code in each (between the "normals" markers;
;; a test checks the two copies are identical): a shared function is not inlined by V8 and costs
;; about 10%.
(module
  (memory (export "memory") 1)

  ;; fill(zp, n4, lo, hi, k0, k1, k2, k3): stores the 8 n4 normals z as float32 at zp.
  (func (export "fill")
    (param $zp i32) (param $n4 i32)
    (param $lo i32) (param $hi i32) (param $k0 i32) (param $k1 i32) (param $k2 i32) (param $k3 i32)
    (local $lov v128) (local $hiv v128)
    (local $vk0 v128) (local $vk1 v128) (local $vk2 v128) (local $vk3 v128)
    (local $h v128) (local $a v128) (local $b v128)
    (local $u v128) (local $e v128) (local $x v128) (local $p v128) (local $r v128)
    (local $sv v128) (local $q v128) (local $t v128) (local $t2 v128)
    (local $sp v128) (local $cp v128) (local $swap v128) (local $z0 v128) (local $z1 v128)
    (local $za v128) (local $zb v128)

    (local.set $vk0 (i32x4.splat (local.get $k0)))
    (local.set $vk1 (i32x4.splat (local.get $k1)))
    (local.set $vk2 (i32x4.splat (local.get $k2)))
    (local.set $vk3 (i32x4.splat (local.get $k3)))
    ;; lane k counts pair j0 + k; a lane whose low word wrapped carries into its high word
    (local.set $lov (i32x4.add (i32x4.splat (local.get $lo)) (v128.const i32x4 0 1 2 3)))
    (local.set $hiv (i32x4.sub (i32x4.splat (local.get $hi))
      (i32x4.lt_u (local.get $lov) (i32x4.splat (local.get $lo)))))

    (block $done
      (br_if $done (i32.eqz (local.get $n4)))
      (loop $next
        ;; ---- normals: begin
        ;; a = fmix(fmix(lo ^ k0) ^ hi ^ k1)
        (local.set $h (v128.xor (local.get $lov) (local.get $vk0)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (v128.xor (v128.xor (local.get $h) (local.get $hiv)) (local.get $vk1)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $a (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        ;; b = fmix(fmix(lo ^ k2) ^ hi ^ k3)
        (local.set $h (v128.xor (local.get $lov) (local.get $vk2)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (v128.xor (v128.xor (local.get $h) (local.get $hiv)) (local.get $vk3)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $b (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))

        ;; u = f32(a >>> 1) * 2^-31 + 2^-32
        (local.set $u (f32x4.add
          (f32x4.mul (f32x4.convert_i32x4_s (i32x4.shr_u (local.get $a) (i32.const 1)))
            (v128.const f32x4 0x1p-31 0x1p-31 0x1p-31 0x1p-31))
          (v128.const f32x4 0x1p-32 0x1p-32 0x1p-32 0x1p-32)))
        ;; u = 2^e m, m in [sqrt(1/2), sqrt(2)); x = m - 1
        (local.set $e (i32x4.shr_s
          (i32x4.sub (local.get $u) (v128.const i32x4 0x3f3504f3 0x3f3504f3 0x3f3504f3 0x3f3504f3))
          (i32.const 23)))
        (local.set $x (f32x4.sub
          (i32x4.sub (local.get $u) (i32x4.shl (local.get $e) (i32.const 23)))
          (v128.const f32x4 1 1 1 1)))
        ;; p = Q(x), Horner from the top coefficient
        (local.set $p (f32x4.add (f32x4.mul (v128.const f32x4 -0.07848278 -0.07848278 -0.07848278 -0.07848278) (local.get $x))
          (v128.const f32x4 0.12812869 0.12812869 0.12812869 0.12812869)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.1310436 -0.1310436 -0.1310436 -0.1310436)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 0.1419044 0.1419044 0.1419044 0.1419044)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.16627474 -0.16627474 -0.16627474 -0.16627474)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 0.20001902 0.20001902 0.20001902 0.20001902)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.25000775 -0.25000775 -0.25000775 -0.25000775)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 0.33333322 0.33333322 0.33333322 0.33333322)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.49999997 -0.49999997 -0.49999997 -0.49999997)))
        ;; log u = ((x^2 p + e ln2_lo) + x) + e ln2_hi;  r = sqrt(-2 log u)
        (local.set $e (f32x4.convert_i32x4_s (local.get $e)))
        (local.set $r (f32x4.sqrt (f32x4.mul
          (f32x4.add
            (f32x4.add
              (f32x4.add
                (f32x4.mul (f32x4.mul (local.get $x) (local.get $x)) (local.get $p))
                (f32x4.mul (local.get $e) (v128.const f32x4 9.0580015e-6 9.0580015e-6 9.0580015e-6 9.0580015e-6)))
              (local.get $x))
            (f32x4.mul (local.get $e) (v128.const f32x4 0.6931381 0.6931381 0.6931381 0.6931381)))
          (v128.const f32x4 -2 -2 -2 -2))))

        ;; angle = 2 pi b / 2^32 = pi/2 (q + t): q = (b + 2^29) >>> 30, t in [-1/2, 1/2)
        (local.set $sv (i32x4.add (local.get $b) (v128.const i32x4 0x20000000 0x20000000 0x20000000 0x20000000)))
        (local.set $q (i32x4.shr_u (local.get $sv) (i32.const 30)))
        (local.set $t (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.sub
            (v128.and (local.get $sv) (v128.const i32x4 0x3fffffff 0x3fffffff 0x3fffffff 0x3fffffff))
            (v128.const i32x4 0x20000000 0x20000000 0x20000000 0x20000000)))
          (v128.const f32x4 0x1p-30 0x1p-30 0x1p-30 0x1p-30)))
        (local.set $t2 (f32x4.mul (local.get $t) (local.get $t)))
        ;; sin(pi/2 t) = t S(t^2)
        (local.set $sp (f32x4.add (f32x4.mul (v128.const f32x4 -0.0046016816 -0.0046016816 -0.0046016816 -0.0046016816) (local.get $t2))
          (v128.const f32x4 0.07968004 0.07968004 0.07968004 0.07968004)))
        (local.set $sp (f32x4.add (f32x4.mul (local.get $sp) (local.get $t2))
          (v128.const f32x4 -0.6459635 -0.6459635 -0.6459635 -0.6459635)))
        (local.set $sp (f32x4.add (f32x4.mul (local.get $sp) (local.get $t2))
          (v128.const f32x4 1.5707964 1.5707964 1.5707964 1.5707964)))
        (local.set $sp (f32x4.mul (local.get $t) (local.get $sp)))
        ;; cos(pi/2 t) = 1 + t^2 C(t^2)
        (local.set $cp (f32x4.add (f32x4.mul (v128.const f32x4 0.0009037666 0.0009037666 0.0009037666 0.0009037666) (local.get $t2))
          (v128.const f32x4 -0.020860165 -0.020860165 -0.020860165 -0.020860165)))
        (local.set $cp (f32x4.add (f32x4.mul (local.get $cp) (local.get $t2))
          (v128.const f32x4 0.25366923 0.25366923 0.25366923 0.25366923)))
        (local.set $cp (f32x4.add (f32x4.mul (local.get $cp) (local.get $t2))
          (v128.const f32x4 -1.2337005 -1.2337005 -1.2337005 -1.2337005)))
        (local.set $cp (f32x4.add (v128.const f32x4 1 1 1 1) (f32x4.mul (local.get $t2) (local.get $cp))))
        ;; odd quadrants swap sin and cos; cos is negated in quadrants 1, 2 and sin in 2, 3
        (local.set $swap (i32x4.neg (v128.and (local.get $q) (v128.const i32x4 1 1 1 1))))
        (local.set $z0 (v128.xor
          (f32x4.mul (local.get $r) (v128.bitselect (local.get $sp) (local.get $cp) (local.get $swap)))
          (i32x4.shl (v128.and (i32x4.add (local.get $q) (v128.const i32x4 1 1 1 1)) (v128.const i32x4 2 2 2 2))
            (i32.const 30))))
        (local.set $z1 (v128.xor
          (f32x4.mul (local.get $r) (v128.bitselect (local.get $cp) (local.get $sp) (local.get $swap)))
          (i32x4.shl (v128.and (local.get $q) (v128.const i32x4 2 2 2 2)) (i32.const 30))))
        ;; element order: pair k's two values side by side
        (local.set $za (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $z0) (local.get $z1)))
        (local.set $zb (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $z0) (local.get $z1)))
        ;; ---- normals: end
        (v128.store (local.get $zp) (local.get $za))
        (v128.store offset=16 (local.get $zp) (local.get $zb))
        (local.set $zp (i32.add (local.get $zp) (i32.const 32)))
        (local.set $lov (i32x4.add (local.get $lov) (v128.const i32x4 4 4 4 4)))
        (local.set $hiv (i32x4.sub (local.get $hiv)
          (i32x4.lt_u (local.get $lov) (v128.const i32x4 4 4 4 4))))
        (br_if $next (local.tee $n4 (i32.sub (local.get $n4) (i32.const 1)))))))

  ;; perturb(wp, dp, n4, lo, hi, k0, k1, k2, k3, s): replaces the float32 values w at wp by
  ;; (w + (s |w|) z) + d, d the float32 values at dp (-0 everywhere for no delta: x + -0 = x).
  (func (export "perturb")
    (param $wp i32) (param $dp i32) (param $n4 i32)
    (param $lo i32) (param $hi i32) (param $k0 i32) (param $k1 i32) (param $k2 i32) (param $k3 i32) (param $s f32)
    (local $lov v128) (local $hiv v128)
    (local $vk0 v128) (local $vk1 v128) (local $vk2 v128) (local $vk3 v128) (local $vs v128) (local $w v128)
    (local $h v128) (local $a v128) (local $b v128)
    (local $u v128) (local $e v128) (local $x v128) (local $p v128) (local $r v128)
    (local $sv v128) (local $q v128) (local $t v128) (local $t2 v128)
    (local $sp v128) (local $cp v128) (local $swap v128) (local $z0 v128) (local $z1 v128)
    (local $za v128) (local $zb v128)

    (local.set $vk0 (i32x4.splat (local.get $k0)))
    (local.set $vk1 (i32x4.splat (local.get $k1)))
    (local.set $vk2 (i32x4.splat (local.get $k2)))
    (local.set $vk3 (i32x4.splat (local.get $k3)))
    (local.set $vs (f32x4.splat (local.get $s)))
    ;; lane k counts pair j0 + k; a lane whose low word wrapped carries into its high word
    (local.set $lov (i32x4.add (i32x4.splat (local.get $lo)) (v128.const i32x4 0 1 2 3)))
    (local.set $hiv (i32x4.sub (i32x4.splat (local.get $hi))
      (i32x4.lt_u (local.get $lov) (i32x4.splat (local.get $lo)))))

    (block $done
      (br_if $done (i32.eqz (local.get $n4)))
      (loop $next
        ;; ---- normals: begin
        ;; a = fmix(fmix(lo ^ k0) ^ hi ^ k1)
        (local.set $h (v128.xor (local.get $lov) (local.get $vk0)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (v128.xor (v128.xor (local.get $h) (local.get $hiv)) (local.get $vk1)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $a (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        ;; b = fmix(fmix(lo ^ k2) ^ hi ^ k3)
        (local.set $h (v128.xor (local.get $lov) (local.get $vk2)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (v128.xor (v128.xor (local.get $h) (local.get $hiv)) (local.get $vk3)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0x85ebca6b 0x85ebca6b 0x85ebca6b 0x85ebca6b)))
        (local.set $h (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 13))))
        (local.set $h (i32x4.mul (local.get $h) (v128.const i32x4 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35 0xc2b2ae35)))
        (local.set $b (v128.xor (local.get $h) (i32x4.shr_u (local.get $h) (i32.const 16))))

        ;; u = f32(a >>> 1) * 2^-31 + 2^-32
        (local.set $u (f32x4.add
          (f32x4.mul (f32x4.convert_i32x4_s (i32x4.shr_u (local.get $a) (i32.const 1)))
            (v128.const f32x4 0x1p-31 0x1p-31 0x1p-31 0x1p-31))
          (v128.const f32x4 0x1p-32 0x1p-32 0x1p-32 0x1p-32)))
        ;; u = 2^e m, m in [sqrt(1/2), sqrt(2)); x = m - 1
        (local.set $e (i32x4.shr_s
          (i32x4.sub (local.get $u) (v128.const i32x4 0x3f3504f3 0x3f3504f3 0x3f3504f3 0x3f3504f3))
          (i32.const 23)))
        (local.set $x (f32x4.sub
          (i32x4.sub (local.get $u) (i32x4.shl (local.get $e) (i32.const 23)))
          (v128.const f32x4 1 1 1 1)))
        ;; p = Q(x), Horner from the top coefficient
        (local.set $p (f32x4.add (f32x4.mul (v128.const f32x4 -0.07848278 -0.07848278 -0.07848278 -0.07848278) (local.get $x))
          (v128.const f32x4 0.12812869 0.12812869 0.12812869 0.12812869)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.1310436 -0.1310436 -0.1310436 -0.1310436)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 0.1419044 0.1419044 0.1419044 0.1419044)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.16627474 -0.16627474 -0.16627474 -0.16627474)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 0.20001902 0.20001902 0.20001902 0.20001902)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.25000775 -0.25000775 -0.25000775 -0.25000775)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 0.33333322 0.33333322 0.33333322 0.33333322)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x))
          (v128.const f32x4 -0.49999997 -0.49999997 -0.49999997 -0.49999997)))
        ;; log u = ((x^2 p + e ln2_lo) + x) + e ln2_hi;  r = sqrt(-2 log u)
        (local.set $e (f32x4.convert_i32x4_s (local.get $e)))
        (local.set $r (f32x4.sqrt (f32x4.mul
          (f32x4.add
            (f32x4.add
              (f32x4.add
                (f32x4.mul (f32x4.mul (local.get $x) (local.get $x)) (local.get $p))
                (f32x4.mul (local.get $e) (v128.const f32x4 9.0580015e-6 9.0580015e-6 9.0580015e-6 9.0580015e-6)))
              (local.get $x))
            (f32x4.mul (local.get $e) (v128.const f32x4 0.6931381 0.6931381 0.6931381 0.6931381)))
          (v128.const f32x4 -2 -2 -2 -2))))

        ;; angle = 2 pi b / 2^32 = pi/2 (q + t): q = (b + 2^29) >>> 30, t in [-1/2, 1/2)
        (local.set $sv (i32x4.add (local.get $b) (v128.const i32x4 0x20000000 0x20000000 0x20000000 0x20000000)))
        (local.set $q (i32x4.shr_u (local.get $sv) (i32.const 30)))
        (local.set $t (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.sub
            (v128.and (local.get $sv) (v128.const i32x4 0x3fffffff 0x3fffffff 0x3fffffff 0x3fffffff))
            (v128.const i32x4 0x20000000 0x20000000 0x20000000 0x20000000)))
          (v128.const f32x4 0x1p-30 0x1p-30 0x1p-30 0x1p-30)))
        (local.set $t2 (f32x4.mul (local.get $t) (local.get $t)))
        ;; sin(pi/2 t) = t S(t^2)
        (local.set $sp (f32x4.add (f32x4.mul (v128.const f32x4 -0.0046016816 -0.0046016816 -0.0046016816 -0.0046016816) (local.get $t2))
          (v128.const f32x4 0.07968004 0.07968004 0.07968004 0.07968004)))
        (local.set $sp (f32x4.add (f32x4.mul (local.get $sp) (local.get $t2))
          (v128.const f32x4 -0.6459635 -0.6459635 -0.6459635 -0.6459635)))
        (local.set $sp (f32x4.add (f32x4.mul (local.get $sp) (local.get $t2))
          (v128.const f32x4 1.5707964 1.5707964 1.5707964 1.5707964)))
        (local.set $sp (f32x4.mul (local.get $t) (local.get $sp)))
        ;; cos(pi/2 t) = 1 + t^2 C(t^2)
        (local.set $cp (f32x4.add (f32x4.mul (v128.const f32x4 0.0009037666 0.0009037666 0.0009037666 0.0009037666) (local.get $t2))
          (v128.const f32x4 -0.020860165 -0.020860165 -0.020860165 -0.020860165)))
        (local.set $cp (f32x4.add (f32x4.mul (local.get $cp) (local.get $t2))
          (v128.const f32x4 0.25366923 0.25366923 0.25366923 0.25366923)))
        (local.set $cp (f32x4.add (f32x4.mul (local.get $cp) (local.get $t2))
          (v128.const f32x4 -1.2337005 -1.2337005 -1.2337005 -1.2337005)))
        (local.set $cp (f32x4.add (v128.const f32x4 1 1 1 1) (f32x4.mul (local.get $t2) (local.get $cp))))
        ;; odd quadrants swap sin and cos; cos is negated in quadrants 1, 2 and sin in 2, 3
        (local.set $swap (i32x4.neg (v128.and (local.get $q) (v128.const i32x4 1 1 1 1))))
        (local.set $z0 (v128.xor
          (f32x4.mul (local.get $r) (v128.bitselect (local.get $sp) (local.get $cp) (local.get $swap)))
          (i32x4.shl (v128.and (i32x4.add (local.get $q) (v128.const i32x4 1 1 1 1)) (v128.const i32x4 2 2 2 2))
            (i32.const 30))))
        (local.set $z1 (v128.xor
          (f32x4.mul (local.get $r) (v128.bitselect (local.get $cp) (local.get $sp) (local.get $swap)))
          (i32x4.shl (v128.and (local.get $q) (v128.const i32x4 2 2 2 2)) (i32.const 30))))
        ;; element order: pair k's two values side by side
        (local.set $za (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $z0) (local.get $z1)))
        (local.set $zb (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $z0) (local.get $z1)))
        ;; ---- normals: end
        ;; (w + (s |w|) z) + d
        (local.set $w (v128.load (local.get $wp)))
        (local.set $za (f32x4.add
          (f32x4.add (local.get $w) (f32x4.mul (f32x4.mul (local.get $vs) (f32x4.abs (local.get $w))) (local.get $za)))
          (v128.load (local.get $dp))))
        (local.set $w (v128.load offset=16 (local.get $wp)))
        (local.set $zb (f32x4.add
          (f32x4.add (local.get $w) (f32x4.mul (f32x4.mul (local.get $vs) (f32x4.abs (local.get $w))) (local.get $zb)))
          (v128.load offset=16 (local.get $dp))))
        (v128.store (local.get $wp) (local.get $za))
        (v128.store offset=16 (local.get $wp) (local.get $zb))
        (local.set $wp (i32.add (local.get $wp) (i32.const 32)))
        (local.set $dp (i32.add (local.get $dp) (i32.const 32)))
        (local.set $lov (i32x4.add (local.get $lov) (v128.const i32x4 4 4 4 4)))
        (local.set $hiv (i32x4.sub (local.get $hiv)
          (i32x4.lt_u (local.get $lov) (v128.const i32x4 4 4 4 4))))
        (br_if $next (local.tee $n4 (i32.sub (local.get $n4) (i32.const 1)))))))
)
