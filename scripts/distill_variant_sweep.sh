#!/usr/bin/env bash
# The loss-variant sweep of issue 17 §2 (docs/sweeps/distill.md): the distill preset's CaDistill, then each
# variant alone (one axis at a time), 2 seeds each beside ce, scored on the validation carve-out only.
# It reads the CaDistill study's 900-item canonical bank (scripts/cadistill_study.sh builds it), fp32 like
# the study's students. Resumable: rerun the same command and finished students are reused.
#   OMP_NUM_THREADS=1 scripts/distill_variant_sweep.sh
#   in the background: setsid nohup ... &   (setsid: the script then lowers its session too, scripts/lib/yield_cpu.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/yield_cpu.sh
BANK=${BANK:-runs/studies/cadistill/banks/canonical}
OUT=${OUT:-runs/sweeps/distill-variants}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[[ -f $BANK/bank.safetensors ]] || { echo "no bank at $BANK: run scripts/cadistill_study.sh first (or set BANK)" >&2; exit 2; }
exec nice -n "${NICE:-19}" clareps distill-sweep --bank "$BANK" --one-axis --seeds 0,1 --set precision=fp32 \
  --grid loss.head=linear --grid loss.align_on=spatial --grid loss.target_label=null \
  --grid loss.ce_on_bank=true --grid loss.scale=0.5,2 --out "$OUT"
