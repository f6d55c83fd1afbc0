#!/usr/bin/env bash
# The CaDistill study (issue 17 §3; configs/study-cadistill.yaml): seven methods x 5 seeds on the shipped
# teacher, the standard evaluation, the paired table. Long (each stage's time lands in RUN/demo.json);
# resumable: rerun the same command and finished stages are reused. Runs on one thread at nice 19 unless
# OMP_NUM_THREADS / NICE say otherwise; prints the table at the end (also in RUN/results/results.md).
#   setsid nohup scripts/cadistill_study.sh > runs/cadistill_study.log 2>&1 &   (setsid: scripts/lib/yield_cpu.sh)
#   OUT=DIR scripts/cadistill_study.sh -q        (another run root; extra arguments go to clareps demo)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/yield_cpu.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT_ARGS=()
[[ -n ${OUT:-} ]] && OUT_ARGS=(--out "$OUT")
CLAREPS=clareps
[[ -x .venv/bin/clareps ]] && CLAREPS=.venv/bin/clareps  # the Makefile's venv, when there is one
exec nice -n "${NICE:-19}" "$CLAREPS" demo -c study-cadistill --section study "${OUT_ARGS[@]}" "$@"
