#!/usr/bin/env bash
# The two studies of docs/studies/why.md (configs/study-why.yaml), through `clareps study`: each finished
# student (training, evaluation, CKA probe) is archived at once into
# docs/studies/data/why/<study>/students/<method>-s<seed>, so a rerun, here or on a new machine, goes on
# with the students the archive lacks. One thread at nice 19 (the banks in one process, one worker).
#   scripts/why_study.sh oracle start      prep (data, teacher, banks, probe banks), then the students, detached;
#                                          log: runs/studies/why/study.log
#   scripts/why_study.sh oracle prep       prep alone, in the foreground
#   scripts/why_study.sh oracle work       a worker (prep done), in the foreground
#   scripts/why_study.sh oracle status     what the archive holds
#   scripts/why_study.sh oracle assemble   once all are archived: the students from the archive, the aggregate
#                                          and the report, in runs/studies/why-oracle (results/results.md)
# (likewise `spatial`). Extra arguments go to `clareps study`; OUT and ARCHIVE move the run root and the
# archive. Run it from a checkout of the study's pre-registered commit, under setsid (so its whole session
# yields the CPU: scripts/lib/yield_cpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/yield_cpu.sh  # started with setsid: the whole session yields, not only this process
study=${1:?usage: scripts/why_study.sh oracle|spatial start|prep|work|status|assemble}
shift
case $study in
  oracle) first=ce,control,cadistill,cadistill-oracle,ce-oracle ;;
  spatial) first=control,cadistill-spatial,control-spatial ;;
  *) echo "unknown study '$study': oracle or spatial" >&2; exit 2 ;;
esac
PY=${PY:-python}
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
export OMP_NUM_THREADS=1
cmd=${1:-start}
shift || true
# both studies share one run root (its banks); each assembles into its own, from the archive
[[ $cmd == assemble ]] && default_out=runs/studies/why-$study || default_out=runs/studies/why
spec=(-c study-why --section "$study" --out "${OUT:-$default_out}" --archive "${ARCHIVE:-docs/studies/data/why/$study}")
case $cmd in
  start) set -- run "${spec[@]}" --first "$first" --prep-parts 1 --workers 1 --detach "$@" ;;
  prep) set -- run "${spec[@]}" --first "$first" --prep-parts 1 --workers 0 "$@" ;;
  work) set -- run "${spec[@]}" --first "$first" --no-prep --workers 1 "$@" ;;
  status | assemble) set -- "$cmd" "${spec[@]}" "$@" ;;
  *) echo "unknown command '$cmd': start, prep, work, status or assemble" >&2; exit 2 ;;
esac
exec nice -n "${NICE:-19}" "$PY" -m clareps study "$@"
