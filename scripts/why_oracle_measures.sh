#!/usr/bin/env bash
# The oracle bank's measures (docs/studies/why.md): 100 matched items (10 per class, seed 0) of the default
# benchmark on the shipped teacher, as the study's banks are built (bank-default, fp32 sampling): the real
# sources (feat-real), the k = 0 control, and the oracle bank with each background and each pass; then
# `bank compare` of each against the control, item by item. One thread, nice 19; resumable (finished banks
# are reused). Writes OUT (default runs/why-oracle)/compare.{md,json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=${OUT:-runs/why-oracle}
CLAREPS=("${PY:-python}" -m clareps)
[[ -x .venv/bin/python ]] && CLAREPS=(.venv/bin/python -m clareps)
COMMON=(-c src/clareps/configs/bank-default.yaml --set per_class=10 --set seed=0
        --set clarid.sampler_precision=fp32 --no-metrics -q)
run() { nice -n "${NICE:-19}" "${CLAREPS[@]}" "$@"; }
run bank build "${COMMON[@]}" --out "$OUT/source" --set kind=feat-real
run bank build "${COMMON[@]}" --out "$OUT/control" --control --set source=matched
for bg in random neutral; do
  for pass in image decoded; do
    run bank build "${COMMON[@]}" --out "$OUT/oracle-$bg-$pass" --set kind=oracle \
      --set oracle.background=$bg --set oracle.oracle_pass=$pass
  done
done
run bank compare "$OUT/control" "$OUT/source" "$OUT"/oracle-{random,neutral}-{image,decoded} --out "$OUT/compare"
