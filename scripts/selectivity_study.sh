#!/usr/bin/env bash
# The selectivity study (docs/studies/selectivity.md). Fixed grids, so a rerun resumes: finished banks are
# reused, a partial bank resumes from its last shard, and each finished teacher's comparison is re-archived.
#   stage teachers  the shipped teacher at steps 6000, 48800, 18000, 27800 (read from git history into
#                   $OUT/teachers, never committed), each with the Jacobian top-16, the low-frequency control
#                   at matched removed norm and the guidance-only control (k = 0) on the CLARID study's 100
#                   matched items (t_e 0.5, tap mid, w 3, engine tol 1e-4, fp32); then `bank compare` and the
#                   banks' per-item measures, archived under $ARCHIVE/teachers/stepN/
#   stage families-val   the direction families (class-contrastive, region-restricted, mask-oracle) at each setting
#                   of FAMILY_GRID, and the Jacobian, low-frequency and k = 0 banks, on 50 validation items
#                   (matched, seed 2, 5 per class: no source in common with the 100 held-out items) of the shipped
#                   teacher; then `clareps study selectivity choose` picks one setting per family ($ARCHIVE/families/chosen.json)
#   stage families-test  each family at its chosen setting on the 100 held-out items (the teachers stage's items,
#                   shipped teacher), compared with that stage's step-48800 Jacobian, low-frequency and control banks
#   OMP_NUM_THREADS=1 setsid nohup nice -n 19 scripts/selectivity_study.sh teachers > selectivity.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/yield_cpu.sh
OUT=${OUT:-runs/studies/selectivity}
ARCHIVE=${ARCHIVE:-docs/studies/data/selectivity}
ENGINE=(--set clarid.match_removed_norm=true --set clarid.tol=1e-4 --set clarid.max_iter=40
        --set clarid.sampler_precision=fp32)
SWEEP=(--w 3 --variants plain --t-e 0.5 --tap mid --feature-label class -q "${ENGINE[@]}")
COMMON=(--per-class 10 "${SWEEP[@]}")
# step:commit of the shipped teacher's history (extremes first, so a partial run already spans the range)
TEACHERS=${TEACHERS:-"6000:fcc4382 48800:0622af2 18000:dc5df5d 27800:f7065ef"}
SETTING=te0.5_k16_w3_plain

teacher() {  # STEP COMMIT: the teacher file at that commit, with its metadata inside (same tensors)
  local dir=$OUT/teachers/step$1
  mkdir -p "$dir"
  if [[ ! -f $dir/teacher.safetensors ]]; then
    git show "$2:models/teacher-default/teacher.safetensors" > "$dir/raw.safetensors"
    git show "$2:models/teacher-default/teacher.json" > "$dir/raw.json"
    clareps study selectivity teacher "$dir/raw.safetensors" "$dir/raw.json" --out "$dir/teacher.safetensors" > /dev/null
    rm -f "$dir/raw.safetensors" "$dir/raw.json"
  fi
  mkdir -p "$ARCHIVE/teachers/step$1"
  git show "$2:models/teacher-default/teacher_check.json" > "$ARCHIVE/teachers/step$1/teacher_check.json"
}

FAMILY_GRID=${FAMILY_GRID:-"class-contrastive:contrast_eps:3,10,30 region-restricted:foreground_share:0.2,0.35,0.5 mask-oracle:mask_threshold:0,0.5"}
SHIPPED=48800:0622af2
family_bank() {  # OUT KIND SETTING VALUE SEED PER_CLASS: one family bank (bank build), shipped teacher
  clareps bank build --out "$1" --teacher "$OUT/teachers/step${SHIPPED%%:*}/teacher.safetensors" -q \
    --set source=matched --set seed="$5" --set per_class="$6" --set clarid.t_e=0.5 --set clarid.k=16 \
    --set clarid.w=3 --set clarid.tap=mid --set clarid.feature_label=class --set clarid.directions="$2" \
    --set clarid."$3"="$4" "${ENGINE[@]}" > /dev/null
}

case "${1:?stage: teachers, families-val or families-test}" in
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
      clareps study selectivity items --out "$dest/items.json" jacobian="$jac" control="$ctl" low-frequency="$lf" > /dev/null
      cp "$banks/sweep.md" "$dest/sweep.md"
      echo "[$(date -u +%H:%M:%S)] step $step: archived in $dest"
    done ;;
  families-val)
    teacher "${SHIPPED%%:*}" "${SHIPPED##*:}"
    val=$OUT/families/val
    clareps bank sweep --out "$val/references" --teacher "$OUT/teachers/step${SHIPPED%%:*}/teacher.safetensors" \
      --per-class 5 "${SWEEP[@]}" --set seed=2 --k 16 --directions jacobian,low-frequency > /dev/null
    for family in $FAMILY_GRID; do
      IFS=: read -r kind name values <<< "$family"
      for v in ${values//,/ }; do
        echo "[$(date -u +%H:%M:%S)] validation: $kind $name=$v"
        family_bank "$val/${kind}_${name}-$v" "$kind" "$name" "$v" 2 5
      done
    done
    clareps study selectivity choose "$val" --out "$ARCHIVE/families/chosen.json" ;;
  families-test)
    teacher "${SHIPPED%%:*}" "${SHIPPED##*:}"
    banks=$OUT/banks/step${SHIPPED%%:*}
    clareps bank sweep --out "$banks" --teacher "$OUT/teachers/step${SHIPPED%%:*}/teacher.safetensors" "${COMMON[@]}" \
      --k 16 --directions jacobian,low-frequency > /dev/null  # the teachers stage's banks: reused when built
    jac=$banks/${SETTING}_tap-mid; lf=$banks/${SETTING}_low-frequency_tap-mid; ctl=$banks/te0.5_k0_w3_plain_tap-mid
    specs=(jacobian="$jac" control="$ctl" low-frequency="$lf"); folders=("$jac" "$ctl" "$lf")
    while IFS=' ' read -r kind name v; do
      echo "[$(date -u +%H:%M:%S)] held out: $kind $name=$v"
      family_bank "$OUT/families/test/${kind}_${name}-$v" "$kind" "$name" "$v" 0 10
      specs+=("$kind=$OUT/families/test/${kind}_${name}-$v"); folders+=("$OUT/families/test/${kind}_${name}-$v")
    done < <(python -c "import json,sys; [print(k, c['setting'], c['value']) for k, c in json.load(open(sys.argv[1]))['chosen'].items()]" "$ARCHIVE/families/chosen.json")
    clareps bank compare "${folders[@]}" --out "$ARCHIVE/families/heldout" > /dev/null
    clareps study selectivity items --out "$ARCHIVE/families/heldout_items.json" "${specs[@]}" > /dev/null ;;
  *) echo "unknown stage $1 (teachers, families-val, families-test)" >&2; exit 2 ;;
esac
