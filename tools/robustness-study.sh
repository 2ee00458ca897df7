#!/usr/bin/env bash
# The robustness study of docs/robustness.md, as it was run: every command, in order.
#   tools/robustness-study.sh OUT [step...]      (steps: s260k tiny s260k-sweep s260k-iter tiny-sweep)
# Run from the repository root after `npm run build`, with the shared folder at ../shared (or
# MOREAU_SHARED). Each step writes OUT/<step>.json (the --json document), OUT/<step>/ (the report:
# report.md and its chart) and OUT/<step>.log (progress, with the load average before and after).
set -u
OUT=${1:?usage: tools/robustness-study.sh OUT [step...]}
shift
STEPS=${*:-s260k tiny s260k-sweep s260k-iter tiny-sweep}
SH=${MOREAU_SHARED:-../shared}
S=$SH/models/stories260K
TS=$SH/data/tinystories/tinystories_validation_head.txt
mkdir -p "$OUT"
STORIES=("$S/stories260K.bin" --tokenizer "$S/tok512.bin" --calib "$TS" --ppl "tinystories=$TS")
ALL=seed:3,calib:3,compute:float16,compute:bfloat16,fp16,bf16,gauss:0.01x3
run() {
  local step=$1
  shift
  echo "== $step $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/$step.log"
  rm -rf "${OUT:?}/$step"
  /usr/bin/time -v node packages/cli/dist/moreau.js robustness "$@" --json "$OUT/$step.json" --report "$OUT/$step" \
    >"$OUT/$step.md" 2>>"$OUT/$step.log"
  local rc=$?
  echo "== $step done $(date -u +%FT%TZ) exit $rc load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/$step.log"
}
for step in $STEPS; do
  case $step in
  s260k) # the paper's hyper-parameters (preset), every perturbation, ratio 0.2
    run s260k "${STORIES[@]}" --preset moreaupruner --criteria magnitude,taylor,moreau,moreau-gs --ratio 0.2 \
      --perturb "$ALL" ;;
  tiny) # the embedded model, its own held-out text for calibration and evaluation
    run tiny tiny --preset moreaupruner --criteria magnitude,taylor,moreau,moreau-gs --ratio 0.2 --perturb "$ALL" ;;
  s260k-sweep) # lr x noiseStd at the preset's other values (10 iterations). Run as a 2 x 2 grid: the
    # planned lr=2e-4,2e-3,2e-2 x noiseStd=0,0.05,0.1 (9 settings) did not fit the study's time on a
    # loaded 2-core machine (docs/robustness.md, "What was reduced")
    run s260k-sweep "${STORIES[@]}" --preset moreaupruner --criteria taylor,moreau,moreau-gs --ratio 0.2 \
      --perturb seed:2,gauss:0.01x2 --sweep lr=2e-4,2e-2 --sweep noiseStd=0,0.05 ;;
  s260k-iter) # 30 iterations (averaging the last 5) at the reference lr and at lr 0.02. Run with
    # moreau-gs only (planned: moreau,moreau-gs), to fit the study's time (docs/robustness.md)
    run s260k-iter "${STORIES[@]}" --preset moreaupruner --criteria moreau-gs --ratio 0.2 \
      --perturb seed:2,gauss:0.01x2 --sweep iterations=30 --sweep lr=2e-4,2e-2 ;;
  tiny-sweep)
    run tiny-sweep tiny --preset moreaupruner --criteria taylor,moreau,moreau-gs --ratio 0.2 \
      --perturb seed:2,gauss:0.01x2 --sweep lr=2e-4,2e-2 --sweep noiseStd=0,0.05 ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
