"""AutoAttack "standard" three ways on the same student and images: robust accuracy and seconds.

- ``reference``: the reference implementation (``pyautoattack`` 0.2, ``version="standard"``);
- ``torchattacks``: ``torchattacks.AutoAttack(version="standard")``, which keeps torchattacks'
  defaults of 10 iterations for APGD-CE, APGD-T and FAB-T (the reference uses 100);
- ``clareps``: AutoAttack as ``clareps evaluate`` builds it (torchattacks' parts, 100 iterations,
  random starts and Square's search drawn per point; the other two draw them per batch).

Only clean-correct points are attacked (``clareps`` also gives the seconds of each of its parts); a
point counts as robust when it is classified correctly
both clean and on the returned example (clipped into the ball first). Prints one JSON line with
wall and CPU seconds (with one thread and other processes beside it, the CPU time is the closer to
an idle machine's wall time).

    python benchmarks/autoattack_compare.py --student runs/distill/ce-s0 --images 50 --eps 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from clareps.data.spec import DataSpec, load_data
from clareps.classifiers.training import predict
from clareps.evaluate.robustness import RobustnessConfig, make_attack
from clareps.evaluate.suite import load_student, select
from clareps.device import hardware


def robust(model, x, y, adv, eps) -> torch.Tensor:
    adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return predict(model, adv, 250) == y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", required=True)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--eps", type=float, default=2.0, help="L-inf budget in units of 1/255")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=["reference", "torchattacks", "clareps"])
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model, meta = load_student(args.student)
    data = load_data(DataSpec(), "test-original")
    idx, images = select(data, args.images, args.seed, "test-original")
    x, y = data.images[idx], data.labels[idx]
    n_classes, eps = meta["num_classes"], args.eps / 255
    clean = predict(model, x, 250) == y
    xc, yc = x[clean], y[clean]

    def reference(xs, ys):
        from pyautoattack import AutoAttack
        aa = AutoAttack(model, eps=eps, norm="Linf", version="standard", seed=args.seed, device="cpu")
        aa.verbose = False
        return aa.run_standard_evaluation(xs, ys, batch_size=250)[0]  # (examples, their predicted labels)

    def torchattacks_aa(xs, ys):
        import torchattacks
        return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=n_classes,
                                       seed=args.seed)(xs, ys)

    parts: dict[str, float] = {}

    def clareps_aa(xs, ys):
        attack = make_attack("autoattack", model, eps, RobustnessConfig(), n_classes, args.seed)
        for sub in getattr(attack, "attacks", []):  # the seconds of each part, in the order they run
            sub.forward = timed(sub.forward, type(sub).__name__)
        return attack(xs, ys)

    def timed(forward, name):
        def run(*a, **k):
            t0 = time.perf_counter()
            try:
                return forward(*a, **k)
            finally:
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - t0
        return run

    runs = {"reference": reference, "torchattacks": torchattacks_aa, "clareps": clareps_aa}
    out: dict = {"bench": "autoattack_compare", "student": args.student, "eps_255": args.eps, "images": images,
                 "clean_accuracy": float(clean.float().mean()), "hardware": hardware(torch.device("cpu"), "fp32")}
    for name in args.only:
        t0, c0 = time.perf_counter(), time.process_time()
        adv = runs[name](xc, yc).detach()
        ok = torch.zeros(len(x), dtype=torch.bool)
        ok[clean] = robust(model, xc, yc, adv, eps)
        out[name] = {"robust_accuracy": float(ok.float().mean()), "seconds": round(time.perf_counter() - t0, 1),
                     "cpu_seconds": round(time.process_time() - c0, 1),
                     "robust_points": torch.nonzero(ok).flatten().tolist()}
        if name == "clareps":
            out[name]["seconds_per_part"] = {part: round(sec, 1) for part, sec in parts.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
