#!/usr/bin/env bash
# Issue 17 §1 on the CaDistill study: does a method move its student toward the teacher's canonical
# features? Builds two held-out banks with the study's teacher and bank settings but another seed (never
# trained on): canonical and the k = 0 control; then `clareps probe` on every finished student (linear
# CKA, RUN/students/*/probe.json) and the table per method (mean ± std over seeds, and per seed the
# paired difference of cadistill and cadistill-matched from ce and control).
#   scripts/cadistill_probe.sh                       (RUN=runs/studies/cadistill PER_CLASS=20 SEED=1)
#   setsid nohup scripts/cadistill_probe.sh > runs/cadistill_probe.log 2>&1 &   (setsid: scripts/lib/yield_cpu.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/yield_cpu.sh
RUN=${RUN:-runs/studies/cadistill}
PER_CLASS=${PER_CLASS:-20}
SEED=${SEED:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
CLAREPS=clareps
[[ -x .venv/bin/clareps ]] && CLAREPS=.venv/bin/clareps
TEACHER=$RUN/teacher/teacher.safetensors
[[ -f $TEACHER ]] || { echo "no study teacher at $TEACHER: run scripts/cadistill_study.sh first (or set RUN)" >&2; exit 2; }
BANKS=$RUN/probe-banks
PY=python3
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
mkdir -p "$BANKS"
# the study's own bank settings (from its canonical bank), another seed, fewer items
"$PY" -c 'import json, sys, yaml; print(yaml.safe_dump(json.load(open(sys.argv[1]))["config"]))' \
  "$RUN/banks/canonical/bank.json" > "$BANKS/config.yaml"
for kind in canonical control; do
  extra=()
  [[ $kind == control ]] && extra=(--control)
  nice -n "${NICE:-19}" "$CLAREPS" bank build -c "$BANKS/config.yaml" --out "$BANKS/$kind-s$SEED" --teacher "$TEACHER" \
    "${extra[@]}" --set seed="$SEED" --set per_class="$PER_CLASS" --no-metrics -q
done
for student in "$RUN"/students/*/; do
  [[ -f $student/student.safetensors ]] || continue  # still training
  nice -n "${NICE:-19}" "$CLAREPS" probe --student "$student" --bank "canonical=$BANKS/canonical-s$SEED" \
    --bank "control=$BANKS/control-s$SEED" > /dev/null
done
shopt -s nullglob
probes=("$RUN"/students/*/probe.json)
[[ ${#probes[@]} -gt 0 ]] || { echo "no finished student in $RUN/students yet: the held-out banks are ready"; exit 0; }
"$CLAREPS" study table probe "${probes[@]}"
