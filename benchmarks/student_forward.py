"""What one student forward (and forward + backward) costs per image, and what the inference layouts buy.

The attacks are made of these calls: Square is one forward per query per surviving point, APGD and FAB
a forward and a backward per iteration. On one student and one batch, in the same process: the eager
forward as trained (the reference), the same in channels-last, and a traced, frozen
`torch.jit.optimize_for_inference` module; forward + backward to the input eager and in channels-last.
Prints one JSON line: milliseconds per image and each ratio to the reference.

    python benchmarks/student_forward.py --student runs/distill/ce-s0 [--batch 250]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from clareps.device import hardware
from clareps.evaluate.suite import load_student


def per_image_ms(step, x: torch.Tensor, repeats: int) -> float:
    for _ in range(2):
        step(x)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step(x)
    return (time.perf_counter() - t0) / repeats / len(x) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", required=True)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    model, meta = load_student(args.student)
    model.eval()
    x = torch.rand(args.batch, meta.get("in_channels", 3), 32, 32, generator=torch.Generator().manual_seed(0))

    def forward(m):
        def run(inp):
            with torch.no_grad():
                m(inp)
        return run

    def backward(m):
        def run(inp):
            inp = inp.clone().requires_grad_()
            m(inp).sum().backward()
        return run

    out = {"bench": "student_forward", "student": args.student, "batch": args.batch,
           "hardware": hardware(torch.device("cpu"), "fp32")}
    out["forward_ms"] = per_image_ms(forward(model), x, args.repeats)
    out["forward_backward_ms"] = per_image_ms(backward(model), x, args.repeats)
    frozen = torch.jit.optimize_for_inference(torch.jit.trace(model, x[:2]))
    out["forward_jit_frozen_ms"] = per_image_ms(forward(frozen), x, args.repeats)
    model = model.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    out["forward_channels_last_ms"] = per_image_ms(forward(model), xc, args.repeats)
    out["forward_backward_channels_last_ms"] = per_image_ms(backward(model), xc, args.repeats)
    for key in ("forward_jit_frozen_ms", "forward_channels_last_ms"):
        out["speedup_" + key[:-3]] = round(out["forward_ms"] / out[key], 2)
    out["speedup_forward_backward_channels_last"] = round(out["forward_backward_ms"] / out["forward_backward_channels_last_ms"], 2)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
