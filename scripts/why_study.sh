#!/usr/bin/env bash
# The two studies of docs/studies/why.md (configs/study-why.yaml), through scripts/cadistill_sessions.py:
# each finished student (training, evaluation, CKA probe) is archived at once into
# docs/studies/data/why/<study>/students/<method>-s<seed>, so a rerun, here or on a new machine, goes on
# with the students the archive lacks. One thread at nice 19 (the banks in one process, one worker).
#   scripts/why_study.sh oracle start      prep (data, teacher, banks, probe banks), then the students, detached;
#                                          log: runs/studies/why/session.log
#   scripts/why_study.sh oracle status     what the archive holds
#   scripts/why_study.sh oracle assemble   once all are archived: the students from the archive, the aggregate
#                                          and the report, in runs/studies/why-oracle (results/results.md)
# (likewise `spatial`). Run it from a checkout of the study's pre-registered commit, under setsid (so its whole
# session yields the CPU: scripts/lib/yield_cpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/yield_cpu.sh  # started with setsid: the whole session yields, not only this process
study=${1:?usage: scripts/why_study.sh oracle|spatial start|work|status|assemble}
shift
case $study in
  oracle) first="ce control cadistill cadistill-oracle ce-oracle" ;;
  spatial) first="control cadistill-spatial control-spatial" ;;
  *) echo "unknown study '$study': oracle or spatial" >&2; exit 2 ;;
esac
PY=${PY:-python}
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
export OMP_NUM_THREADS=1 PREP_PARTS=1 STUDY_CONFIG=study-why STUDY_SECTION=$study STUDY_FIRST=$first
cmd=${1:-start}
shift || true
# both studies share one run root (its banks); each assembles into its own, from the archive
[[ $cmd == assemble ]] && default_out=runs/studies/why-$study || default_out=runs/studies/why
export OUT=${OUT:-$default_out} ARCHIVE=${ARCHIVE:-$PWD/docs/studies/data/why/$study}
[[ $cmd == start ]] && set -- 1  # one worker
exec nice -n "${NICE:-19}" "$PY" scripts/cadistill_sessions.py "$cmd" "$@"
