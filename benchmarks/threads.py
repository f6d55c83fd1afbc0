"""Two jobs on one small machine: how much they slow each other, and what helps.

Runs a student training step (small CNN, batch 128, 32x32, fp32) as separate processes: one
alone, then two at once, under OpenMP settings to compare: the default (threads spin while they
wait), OMP_WAIT_POLICY=PASSIVE (they sleep), and one thread per process. Prints one JSON line
with each setting's median seconds per step and its slowdown against one process alone with
the default threads. Measure on an otherwise idle machine.

    python benchmarks/threads.py [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
import torch, torch.nn.functional as F
from clareps.distill.students import make_student
torch.manual_seed(0)
model = make_student("small-cnn", 10, width=32).train()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
times = []
for i in range(int(sys.argv[1])):
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t0)
print(json.dumps(times[3:]))
"""


def run(n_procs: int, steps: int, env_extra: dict) -> float:
    """Median seconds per step over all processes started together."""
    env = dict(os.environ, **env_extra)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(steps)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(n_procs)]
    times = [t for p in procs for t in json.loads(p.communicate()[0])]
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from clareps.device import hardware

    t = str(args.threads)
    settings = {
        "alone": (1, {"OMP_NUM_THREADS": t}),
        "alone_passive": (1, {"OMP_NUM_THREADS": t, "OMP_WAIT_POLICY": "PASSIVE"}),
        "two_default": (2, {"OMP_NUM_THREADS": t}),
        "two_passive": (2, {"OMP_NUM_THREADS": t, "OMP_WAIT_POLICY": "PASSIVE"}),
        "two_one_thread_each": (2, {"OMP_NUM_THREADS": "1"}),
        "alone_one_thread": (1, {"OMP_NUM_THREADS": "1"}),
    }
    sec = {name: run(n, args.steps, env) for name, (n, env) in settings.items()}
    base = sec["alone"]
    print(json.dumps({"sec_per_step": {k: round(v, 4) for k, v in sec.items()},
                      "slowdown_vs_alone": {k: round(v / base, 2) for k, v in sec.items()},
                      "steps": args.steps, "threads": args.threads, "workload": "small-cnn w32 b128 32px fp32",
                      "hardware": hardware(), "loadavg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
