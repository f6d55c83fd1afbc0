"""Is the engine's subspace the top-k? The engine against a full Jacobian SVD; prints one JSON line.

For n inverted test images on the shipped teacher (or --teacher) at the bank preset's t_e, tap,
k and DDIM density: the whole Jacobian of the tap (``jacrev``) and its SVD, then the engine at
the preset's tol and at --tight-tol, each compared with the true top-k: largest principal angle,
largest relative singular-value error, captured energy (||J V||_F^2 over the optimum), and the
spectral gap sigma_k / sigma_(k+1) that decides how well "the top-k" is defined. What a wrong
subspace does to the samples: the pixel RMSE between decodings of the latent projected with the
engine's and with the true subspace, beside the RMSE between the true canonical sample and the
control (k = 0), i.e. the change the projection itself makes. Everything fp32.

    python benchmarks/clarid_oracle.py [--n 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clarid_common import full_jacobian, latents  # noqa: E402  (same teacher loading and inversion)

from clareps.bank.build import BankConfig  # noqa: E402
from clareps.clarid.directions import project  # noqa: E402
from clareps.device import hardware  # noqa: E402
from clareps.clarid.engine import top_subspace  # noqa: E402
from clareps.clarid.forward_mode import jacobian_mode  # noqa: E402
from clareps.clarid.linalg import principal_angles  # noqa: E402
from clareps.config import load_config  # noqa: E402
from clareps.adapters.loading import load_teacher_any as load_teacher  # noqa: E402
from clareps.diffusion.sampler import decode  # noqa: E402
from clareps.errors import ClarepsError  # noqa: E402
from clareps.paths import default_teacher, preset  # noqa: E402


def rmse01(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Per item, pixel RMSE in [0, 1] units between decodings in [-1, 1]."""
    return (((a - b) ** 2).flatten(1).mean(1).sqrt() / 2).tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default=str(default_teacher()))
    p.add_argument("--preset", default="bank-default")
    p.add_argument("--n", type=int, default=5, help="inverted test items")
    p.add_argument("--tight-tol", type=float, default=1e-6)
    p.add_argument("--tight-max-iter", type=int, default=300)
    p.add_argument("--jac-chunk", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(BankConfig, preset(args.preset)).clarid
    model, _ = load_teacher(args.teacher, torch.device("cpu"))
    for prm in model.parameters():
        prm.requires_grad_(False)
    t, k, tap = model.schedule.index(cfg.t_e), cfg.k, cfg.tap
    inv = argparse.Namespace(n_latents=args.n, te=cfg.t_e, seed=args.seed, latents="invert", images="default",
                             data_std=0.5, invert_steps=cfg.steps)
    x, y, made = latents(model, inv, torch.device("cpu"))
    if not made.startswith("ddim"):
        raise ClarepsError(f"no test images to invert ({made}); build the benchmark with `clareps data build`")

    spectra, tops = [], []
    with jacobian_mode(model), torch.no_grad():
        for b in range(len(x)):
            jac = full_jacobian(model, tap, x[b:b + 1], torch.tensor(t), y[b:b + 1], args.jac_chunk)
            _, s, vh = torch.linalg.svd(jac, full_matrices=False)
            spectra.append(s)
            tops.append(vh[:k])
    true_v = torch.stack(tops).reshape(len(x), k, *x.shape[1:])
    opt = torch.stack([s[:k].pow(2).sum() for s in spectra])

    def compare(tol: float, max_iter: int) -> dict:
        sub = top_subspace(model, x, t, y, k, tap=tap, tol=tol, max_iter=max_iter, seed=args.seed)
        ang = [math.degrees(float(principal_angles(tops[b], sub.vectors[b].flatten(1))[0])) for b in range(len(x))]
        err = [float(((sub.singular_values[b] - spectra[b][:k]).abs() / spectra[b][:k]).max()) for b in range(len(x))]
        return {"tol": tol, "iterations": sub.iterations.tolist(), "converged": sub.converged.tolist(),
                "max_angle_deg": [round(a, 2) for a in ang], "sv_rel_err_max": [round(e, 6) for e in err],
                "captured_energy": [round(float(e), 6) for e in sub.energy / opt]}, sub.vectors

    preset_row, preset_v = compare(cfg.tol, cfg.max_iter)
    tight_row, tight_v = compare(args.tight_tol, args.tight_max_iter)
    with torch.no_grad():
        dec = {name: decode(model, lat, y, t, cfg.steps, cfg.w)
               for name, lat in (("true", project(x, true_v)), ("preset", project(x, preset_v)),
                                 ("tight", project(x, tight_v)), ("control", x))}
    preset_row["sample_rmse_vs_true"] = [round(v, 4) for v in rmse01(dec["preset"], dec["true"])]
    tight_row["sample_rmse_vs_true"] = [round(v, 4) for v in rmse01(dec["tight"], dec["true"])]
    flat = x.flatten(1)
    print(json.dumps({
        "preset": preset_row, "tight": tight_row,
        "spectral_gap": [round(float(s[k - 1] / s[k]), 4) for s in spectra],
        "sigma_1_k_kplus1": [[round(float(s[i]), 3) for i in (0, k - 1, k)] for s in spectra],
        "removed_share_true": [round(v, 4) for v in (project(x, true_v).flatten(1) - flat).norm(dim=1)
                                                    .div(flat.norm(dim=1)).tolist()],
        "sample_rmse_control_vs_true": [round(v, 4) for v in rmse01(dec["control"], dec["true"])],
        "k": k, "tap": tap, "t_e": cfg.t_e, "t": t, "steps": cfg.steps, "w": cfg.w, "labels": y.tolist(),
        "latents": made, "teacher": args.teacher, "d_in": x[0].numel(), "precision": "fp32",
        "hardware": hardware(torch.device("cpu"), "fp32"),  # the engine and its oracle run in fp32
    }))


if __name__ == "__main__":
    try:
        main()
    except ClarepsError as exc:
        sys.exit(f"error: {exc}")
