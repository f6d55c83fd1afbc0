#!/usr/bin/env bash
# Train the shape judge and the default teacher on one machine (meant for a CUDA GPU),
# then run teacher-check. The teacher gets as many whole thousands of steps as fit in
# BUDGET seconds, measured by a short probe run first; the chosen step count is in the
# command that the model card records.
#   bash benchmarks/gpu_train_teacher.sh OUTDIR [BUDGET_SECONDS] [MAX_STEPS]
# RESUME_FROM=models/teacher-default continues that teacher (its checkpoint, same config) for the
# budget instead of starting afresh, and checks it with the shipped judge.
# CHECK_ARGS (e.g. "--per-class 2 --steps 5") shortens teacher-check for a dry run on CPU.
set -euo pipefail
OUT=${1:-runs/gpu}
BUDGET=${2:-400}
MAX_STEPS=${3:-80000}
MIN_STEPS=${MIN_STEPS:-1000}
CLAREPS="python3 -m clareps"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -c "from clareps.data.benchmark import BenchmarkConfig, fingerprint; print('data', fingerprint(BenchmarkConfig()))"
RESUME_FROM=${RESUME_FROM:-}
JUDGE="$OUT/judge/judge.safetensors"
if [ -n "$RESUME_FROM" ]; then
  JUDGE=models/judge-default/judge.safetensors
  mkdir -p "$OUT" && rm -rf "$OUT/teacher" && cp -r "$RESUME_FROM" "$OUT/teacher"
else
  $CLAREPS train-judge --out "$OUT/judge" -q ${JUDGE_SET:-}
fi
$CLAREPS train-teacher --set steps=${PROBE_STEPS:-300} --set log_every=${PROBE_LOG:-100} --set ckpt_every=100000 --out "$OUT/probe" -q ${TEACHER_SET:-}
SPS=$(python3 -c "import json; print(json.loads(open('$OUT/probe/metrics.jsonl').read().splitlines()[-1])['sec_per_step'])")
STEPS=$(python3 -c "print(min($MAX_STEPS, max($MIN_STEPS, int($BUDGET / $SPS) // 1000 * 1000)))")
RESUME_SET=""
if [ -n "$RESUME_FROM" ]; then  # the budget's steps on top of the step the checkpoint reached
  STEPS=$(python3 -c "import json; print(json.load(open('$OUT/teacher/checkpoint.json'))['step'] + $STEPS)")
  # a run keeps the precision it was started with (part of its config hash; the shipped teacher's is bf16)
  RESUME_SET="--set precision=$(python3 -c "import yaml; print(yaml.safe_load(open('$OUT/teacher/config.yaml'))['precision'])")"
fi
echo "probe: $SPS s/step -> $STEPS steps"
$CLAREPS train-teacher --set steps="$STEPS" $RESUME_SET --out "$OUT/teacher" -q ${TEACHER_SET:-}
$CLAREPS teacher-check --teacher "$OUT/teacher/teacher.safetensors" --judge "$JUDGE" -q ${CHECK_ARGS:-}
