#!/usr/bin/env bash
# The selectivity study (docs/studies/selectivity.md). Fixed grids, so a rerun resumes: finished banks are
# reused, a partial bank resumes from its last shard, and each finished teacher's comparison is re-archived.
#   stage teachers  the shipped teacher at steps 6000, 48800, 18000, 27800 (read from git history into
#                   $OUT/teachers, never committed), each with the Jacobian top-16, the low-frequency control
#                   at matched removed norm and the guidance-only control (k = 0) on the CLARID study's 100
#                   matched items (t_e 0.5, tap mid, w 3, engine tol 1e-4, fp32); then `bank compare` and the
#                   banks' per-item measures, archived under $ARCHIVE/teachers/stepN/
#   OMP_NUM_THREADS=1 setsid nohup nice -n 19 scripts/selectivity_study.sh teachers > selectivity.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/yield_cpu.sh
OUT=${OUT:-runs/studies/selectivity}
ARCHIVE=${ARCHIVE:-docs/studies/data/selectivity}
COMMON=(--per-class 10 --w 3 --variants plain --t-e 0.5 --tap mid --feature-label class -q
        --set clarid.match_removed_norm=true --set clarid.tol=1e-4 --set clarid.max_iter=40
        --set clarid.sampler_precision=fp32)
# step:commit of the shipped teacher's history (extremes first, so a partial run already spans the range)
TEACHERS=${TEACHERS:-"6000:fcc4382 48800:0622af2 18000:dc5df5d 27800:f7065ef"}
SETTING=te0.5_k16_w3_plain

teacher() {  # STEP COMMIT: the teacher file at that commit, with its metadata inside (same tensors)
  local dir=$OUT/teachers/step$1
  mkdir -p "$dir"
  if [[ ! -f $dir/teacher.safetensors ]]; then
    git show "$2:models/teacher-default/teacher.safetensors" > "$dir/raw.safetensors"
    git show "$2:models/teacher-default/teacher.json" > "$dir/raw.json"
    python scripts/selectivity_teacher.py "$dir/raw.safetensors" "$dir/raw.json" "$dir/teacher.safetensors"
    rm -f "$dir/raw.safetensors" "$dir/raw.json"
  fi
  mkdir -p "$ARCHIVE/teachers/step$1"
  git show "$2:models/teacher-default/teacher_check.json" > "$ARCHIVE/teachers/step$1/teacher_check.json"
}

case "${1:?stage: teachers}" in
  teachers)
    for pair in $TEACHERS; do
      step=${pair%%:*}; commit=${pair##*:}
      teacher "$step" "$commit"
      banks=$OUT/banks/step$step
      echo "[$(date -u +%H:%M:%S)] step $step: banks in $banks"
      clareps bank sweep --out "$banks" --teacher "$OUT/teachers/step$step/teacher.safetensors" "${COMMON[@]}" \
        --k 16 --directions jacobian,low-frequency > /dev/null
      jac=$banks/${SETTING}_tap-mid; lf=$banks/${SETTING}_low-frequency_tap-mid; ctl=$banks/te0.5_k0_w3_plain_tap-mid
      dest=$ARCHIVE/teachers/step$step
      clareps bank compare "$jac" "$ctl" "$lf" --out "$dest/compare" > /dev/null
      python scripts/selectivity_items.py --out "$dest/items.json" jacobian="$jac" control="$ctl" low-frequency="$lf"
      cp "$banks/sweep.md" "$dest/sweep.md"
      echo "[$(date -u +%H:%M:%S)] step $step: archived in $dest"
    done ;;
  *) echo "unknown stage $1 (teachers)" >&2; exit 2 ;;
esac
