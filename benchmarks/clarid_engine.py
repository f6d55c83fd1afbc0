"""Speed and quality of the CLARID subspace engine; prints one JSON object.

Compared, on the same teacher, latents and feature tap, in one process:
- ours: ``clareps.clarid.engine.top_subspace`` (batched LOBPCG, vmapped JVPs/VJPs);
- ref: the Diffusion-Pullback algorithm (Park et al. 2023) as published, one latent at a
  time: chunked ``jacfwd`` JVPs, then ``torch.autograd.functional.jacobian`` (one reverse
  pass per direction) for J^T U, SVD of the k x D result, stop when the raw vectors are
  ``allclose`` (after ``min_iter``);
- full: the whole Jacobian with ``jacrev`` plus an SVD, which also gives the optimum.

Both iterations are timed to the first iterate that captures >= 99 % of the optimal energy
(sum of the top-k squared singular values of the full Jacobian). That check runs inside
callbacks whose own time is subtracted. ``ours_s`` is per latent with the n latents in one
batch; ``ours_alone_s`` runs them one at a time; ``ratio_vs_ref_big_batch`` compares the
reference with our throughput at ``--big-batch`` to the engine's own (stricter) stopping rule.

    python benchmarks/clarid_engine.py --random-teacher --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys

import torch
from torch.func import vjp, vmap

from clarid_common import Clock, decomposed_group_norm, energy, features, full_jacobian, latents  # (beside this file)

from clareps.clarid.engine import JacobianOperator, top_subspace
from clareps.clarid.forward_mode import jacobian_mode
from clareps.clarid.linalg import principal_angles
from clareps.device import hardware
from clareps.diffusion.schedule import Schedule
from clareps.taps import run_to_tap
from clareps.diffusion.unet import UNet, UNetConfig
from clareps.errors import ClarepsError


def reference(model, tap, x1, t, y1, k, chunk, seed, min_iter, max_iter, thr, on_iter):
    """Diffusion-Pullback's local_encoder_pullback (Park et al. 2023), rewritten for our U-Net."""
    get_h = features(model, tap, t, y1)
    shape, dim = x1.shape[1:], x1[0].numel()
    a = torch.tensor(0.0, device=x1.device)
    gen = torch.Generator().manual_seed(seed)
    v = torch.linalg.qr(torch.randn(dim, k, generator=gen).to(x1.device))[0].T.reshape(k, *shape)
    for i in range(max_iter):
        v_prev = v.clone()
        u = torch.cat([torch.func.jacfwd(lambda a_, vi=vi: get_h(x1 + a_ * vi))(a)
                       for vi in v.chunk(math.ceil(k / chunk))])
        vt = torch.autograd.functional.jacobian(lambda xx: (u * get_h(xx)).sum(1), x1).reshape(k, dim)
        _, s, vh = torch.linalg.svd(vt, full_matrices=False)
        v = vh.reshape(k, *shape)
        if on_iter(i + 1, vh):
            return i + 1
        if torch.allclose(v_prev, v, atol=thr) and i > min_iter:
            return i + 1
    return max_iter


def reference_stop_iterations(jac, v_rows, done, min_iter, max_iter, thr) -> int:
    """Continue the reference's own iteration on the explicit Jacobian (same arithmetic:
    rows <- right singular vectors of rows J^T J) until its allclose rule fires."""
    gram = jac.T @ jac
    for i in range(done, max_iter):
        _, _, vh = torch.linalg.svd(v_rows @ gram, full_matrices=False)
        if torch.allclose(v_rows, vh, atol=thr) and i > min_iter:
            return i + 1
        v_rows = vh
    return max_iter


def run_ours(model, x, t, y, k, tap, tol, max_iter, clock, jacs=None, opts=None):
    """Our engine on a batch; returns (total s, s to 99 % for every latent, result, first 99 step)."""
    need = [0.99 * o for o in opts] if opts else None
    reached, hit = [False] * x.shape[0], {}

    def on_step(step, idx, vectors, _s):
        if jacs is None:
            return
        def check():
            for j, b in enumerate(idx.tolist()):
                if not reached[b] and energy(jacs[b], vectors[j]) >= need[b]:
                    reached[b] = True
            if all(reached) and "t" not in hit:
                hit.update(t=None, step=step)
        clock.paused(check)
        if "step" in hit and hit["t"] is None:
            hit["t"] = clock.elapsed()

    clock.reset()
    res = top_subspace(model, x, t, y, k, tap=tap, tol=tol, max_iter=max_iter, on_step=on_step)
    return clock.elapsed(), hit.get("t"), res, hit.get("step")


def step_floor(model, x, t, y, k, tap, clock, reps=5):
    """Median times of one batched JVP (k tangents) and one batched VJP (k cotangents), alone;
    with the fused GroupNorm the engine uses and, interleaved, our U-Net's decomposed one."""
    tt, yy = torch.full((x.shape[0],), t, device=x.device), y
    f = lambda xx, a, b: run_to_tap(model, tap, xx, a, b).flatten(1)  # noqa: E731
    rows = torch.randn(x.shape[0], k, x[0].numel(), device=x.device)
    norm = {"fused": contextlib.nullcontext, "decomposed": lambda: decomposed_group_norm(model)}
    times: dict[str, list[float]] = {}
    with jacobian_mode(model), torch.no_grad():
        ops = {}
        for name, ctx in norm.items():
            with ctx():
                ops[name] = JacobianOperator(f, x, [tt, yy])
        cot = torch.randn(x.shape[0], k, ops["fused"].out_dim, device=x.device)
        for rep in range(reps + 1):  # the first round warms up
            for name, ctx in norm.items():
                with ctx():
                    clock.reset(); ops[name].jvp(rows); jv = clock.elapsed()
                    clock.reset(); ops[name].vjp(cot); reused = clock.elapsed()
                    clock.reset(); _, pull = vjp(lambda xx: f(xx, tt, yy), x); vmap(pull)(cot.transpose(0, 1))
                    fresh = clock.elapsed()
                if rep:
                    for what, v in (("jvp", jv), ("vjp_fresh", fresh), ("vjp_reused", reused)):
                        times.setdefault(f"{name}_{what}", []).append(v)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="models/teacher-default/teacher.safetensors")
    p.add_argument("--random-teacher", action="store_true", help="default UNet(UNetConfig()) at its init")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--tap", default="mid")
    p.add_argument("--te", type=float, default=0.5, help="extraction timestep as a fraction of T")
    p.add_argument("--n-latents", type=int, default=4)
    p.add_argument("--latents", choices=["invert", "gaussian"], default="invert")
    p.add_argument("--images", default="default", help="npz or benchmark folder to invert ('default')")
    p.add_argument("--data-std", type=float, default=0.5, help="image std for Gaussian latents")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--max-iter", type=int, default=50)
    p.add_argument("--ref-chunk", type=int, default=16, help="reference's jacfwd chunk size")
    p.add_argument("--ref-max-iter", type=int, default=50)
    p.add_argument("--ref-thr", type=float, default=1e-3)
    p.add_argument("--ref-min-iter", type=int, default=10)
    p.add_argument("--big-batch", type=int, default=32)
    p.add_argument("--floor-steps", type=int, default=5)
    p.add_argument("--jac-chunk", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from clareps.device import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.random_teacher:
        model, source = UNet(UNetConfig(), Schedule.cosine()).to(device).eval(), "random init"
    else:
        from clareps.adapters.loading import load_teacher_any as load_teacher

        model, _ = load_teacher(args.teacher, device)
        source = args.teacher
    for prm in model.parameters():
        prm.requires_grad_(False)
    load0 = os.getloadavg()[0]
    clock, k, tap = Clock(device), args.k, args.tap
    sched = model.schedule
    t_e = sched.index(args.te)
    x, y, made = latents(model, args, device)
    n = x.shape[0]
    tt = torch.tensor(t_e, device=device)

    # Full Jacobians: the optimum, the true subspaces and the cost of the brute-force route.
    jacs, opts, tops, full_times = [], [], [], []
    with jacobian_mode(model), torch.no_grad():
        for b in range(n):
            clock.reset()
            jac = full_jacobian(model, tap, x[b:b + 1], tt, y[b:b + 1], args.jac_chunk)
            _, s, vh = torch.linalg.svd(jac, full_matrices=False)
            full_times.append(clock.elapsed())
            jacs.append(jac); opts.append(float(s[:k].pow(2).sum())); tops.append((s[:k], vh[:k]))

    def angle_deg(b, rows):
        return math.degrees(float(principal_angles(tops[b][1], rows.reshape(k, -1))[0]))

    # Ours on the batch, then each latent alone, to a converged subspace and to 99 %.
    top_subspace(model, x[:1], t_e, y[:1], k, tap=tap, max_iter=2)  # warm-up: functorch's first call
    ours_total, ours_99, res, ours_99_step = run_ours(model, x, t_e, y, k, tap, args.tol, args.max_iter,
                                                      clock, jacs, opts)
    alone = [run_ours(model, x[b:b + 1], t_e, y[b:b + 1], k, tap, args.tol, args.max_iter, clock,
                      jacs[b:b + 1], opts[b:b + 1]) for b in range(n)]

    # The reference, one latent at a time, stopped at 99 % (its own rule is replayed below).
    ref_times, ref_iters, ref_stop, ref_angles = [], [], [], []
    with jacobian_mode(model), torch.no_grad():
        for b in range(n):
            state = {}

            def on_iter(i, vh, b=b):
                def check():
                    state["vh"] = vh.clone()
                    return energy(jacs[b], vh) >= 0.99 * opts[b]
                done = clock.paused(check)
                if done:
                    state["t"] = clock.elapsed()
                return done

            clock.reset()
            it = reference(model, tap, x[b:b + 1], tt, y[b:b + 1], k, args.ref_chunk, args.seed + b,
                           args.ref_min_iter, args.ref_max_iter, args.ref_thr, on_iter)
            ref_times.append(state.get("t", math.nan)); ref_iters.append(it)
            ref_angles.append(angle_deg(b, state["vh"]))
            ref_stop.append(reference_stop_iterations(jacs[b], state["vh"], it, args.ref_min_iter,
                                                      args.ref_max_iter, args.ref_thr))

    # Per-step cost with every latent active (tol 0 keeps them all) against the floor.
    stamps: list[float] = []
    top_subspace(model, x, t_e, y, k, tap=tap, tol=1e-30, max_iter=args.floor_steps,
                 on_step=lambda *a: stamps.append(clock.now()))
    per_step = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
    floor = step_floor(model, x, t_e, y, k, tap, clock)

    # Throughput at batch 1 and at a big batch (Gaussian latents, own stopping rule).
    gen = torch.Generator().manual_seed(args.seed + 1)
    big = args.big_batch
    xb = x.std() * torch.randn(big, *x.shape[1:], generator=gen).to(device)
    yb = (torch.arange(big) % model.cfg.num_classes).to(device)
    clock.reset()
    for b in range(min(big, 4)):
        top_subspace(model, xb[b:b + 1], t_e, yb[b:b + 1], k, tap=tap, tol=args.tol, max_iter=args.max_iter)
    rate_1 = min(big, 4) / clock.elapsed()
    clock.reset()
    top_subspace(model, xb, t_e, yb, k, tap=tap, tol=args.tol, max_iter=args.max_iter)
    rate_big = big / clock.elapsed()

    ours_s = ours_99 / n if ours_99 is not None else math.nan
    ref_s = sum(ref_times) / n
    full_s = sum(full_times) / n
    ours_alone_s = sum(a[1] if a[1] is not None else math.nan for a in alone) / n
    captured = [float(res.energy[b]) / opts[b] for b in range(n)]
    print(json.dumps({
        "ratio_vs_ref": round(ref_s / ours_s, 2),
        "ratio_vs_ref_big_batch": round(ref_s * rate_big, 2),
        "ratio_vs_full": round(full_s / (ours_total / n), 2),
        "iter_over_floor": round(per_step / (floor["fused_jvp"] + floor["fused_vjp_fresh"]), 3),
        "batch_speedup": round(rate_big / rate_1, 2),
        "ref_s": round(ref_s, 3), "ours_s": round(ours_s, 3),
        "ours_alone_s": round(ours_alone_s, 3), "ratio_vs_ref_alone": round(ref_s / ours_alone_s, 2),
        "ours_converged_s": round(ours_total / n, 3), "full_s": round(full_s, 3),
        "ours_iters_to_99": ours_99_step, "ours_iters": res.iterations.tolist(),
        "ours_converged": res.converged.tolist(),
        "ours_energy_frac": [round(c, 5) for c in captured],
        "ours_max_angle_deg_vs_true": [round(angle_deg(b, res.vectors[b]), 2) for b in range(n)],
        "ours_max_angle_deg_last_step": [round(math.degrees(a), 3) for a in res.max_angle.tolist()],
        "ours_sv_rel_err_max": round(max(float(((res.singular_values[b] - tops[b][0]).abs() / tops[b][0]).max())
                                         for b in range(n)), 6),
        "ref_iters_to_99": ref_iters, "ref_max_angle_deg_vs_true_at_99": [round(a, 2) for a in ref_angles],
        "ref_own_stop_iters": ref_stop, "ref_own_stop_note": (
            f"allclose(atol={args.ref_thr}) after {args.ref_min_iter} iters, capped at {args.ref_max_iter}; "
            "replayed on the explicit Jacobian from the 99 % iterate"),
        "ours_step_s": round(per_step, 4), "floor_s": {n: round(v, 4) for n, v in floor.items()},
        "iter_over_floor_reused_vjp": round(per_step / (floor["fused_jvp"] + floor["fused_vjp_reused"]), 3),
        "norm_step_ratio": round((floor["decomposed_jvp"] + floor["decomposed_vjp_reused"])
                                 / (floor["fused_jvp"] + floor["fused_vjp_reused"]), 3),
        "batch_sizes": [1, big], "latents_per_s": [round(rate_1, 3), round(rate_big, 3)],
        "top_singular_values": [round(v, 4) for v in tops[0][0][:4].tolist()] + ["..."]
                               + [round(float(tops[0][0][-1]), 4)],
        "k": k, "tap": tap, "t_e": t_e, "T": sched.T, "n_latents": n, "latents": made, "teacher": source,
        "tol": args.tol, "ref_chunk": args.ref_chunk, "clock": clock.kind, "d_in": x[0].numel(), "d_out": jacs[0].shape[0],
        "hardware": hardware(device, "fp32"),  # the engine always runs in fp32
        "loadavg_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)], "torch": torch.__version__,
    }))


if __name__ == "__main__":
    try:
        main()
    except ClarepsError as exc:
        sys.exit(f"error: {exc}")
