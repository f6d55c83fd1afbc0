"""The teacher's model card: how it was made and what it scores, from files in its folder."""

from __future__ import annotations

from pathlib import Path

from clareps.io import read_json, read_jsonl, read_yaml_or_none, write_text


CONSISTENCY_BAR = 0.85


def _fmt(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _logged_minutes(folder: Path, cfg: dict) -> float:
    path = folder / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    every = cfg.get("log_every", 1)
    return sum(r.get("sec_per_step", 0.0) * every for r in rows) / 60


def _judge(check: dict) -> str:
    """The judge's path (relative to the repository when inside it) and its test accuracies."""
    from clareps.paths import repo_root

    path = Path(str(check.get("judge", "?")))
    if path.is_absolute() and path.is_relative_to(repo_root()):
        path = path.relative_to(repo_root())
    accs = {k.removeprefix("accuracy/"): v for k, v in (check.get("judge_accuracy") or {}).items()
            if k.startswith("accuracy/")}
    return f"`{path}`" + "".join(f", {k} accuracy {_fmt(v)}" for k, v in accs.items())


def _devices(info: dict) -> str:
    """Where the training time went: per device when recorded, else the last device alone."""
    by_device = info.get("by_device") or {"?": {"seconds": info.get("wall_seconds", 0.0)}}
    parts = [f"{_fmt(v['seconds'] / 60, 1)} min" + (f" ({v['steps']} steps" if "steps" in v else "")
             + (f", {v['precision']}" if "precision" in v else "") + (")" if "steps" in v else "")
             + f" on {name}" for name, v in by_device.items()]
    return ", ".join(parts)


def write_model_card(folder: str | Path) -> Path:
    folder = Path(folder)
    cfg = read_yaml_or_none(folder / "config.yaml") or {}
    info = read_json(folder / "train_info.json") if (folder / "train_info.json").exists() else {}
    check = read_json(folder / "teacher_check.json") if (folder / "teacher_check.json").exists() else {}
    meta = read_json(folder / "teacher.json")
    unet = meta["unet"]
    lines = [
        "# Model card: clareps default teacher", "",
        "A class-conditional U-Net (eps-prediction, cosine VP schedule, classifier-free guidance "
        "through a null class) trained by clareps on the default benchmark (animal-mnist silhouettes "
        f"on natural backgrounds, rho={cfg.get('data', {}).get('benchmark', {}).get('rho', '?')}).", "",
        "## How it was made", "",
        "- command(s), in the order they ran (each resumed the last): "
        + ", ".join(f"`{c}`" for c in info.get("commands") or [info.get("command", "?")]),
        f"- steps: {meta.get('step')} at batch {cfg.get('batch_size')}, lr {cfg.get('lr')}, "
        f"EMA {cfg.get('ema_decay')}, precision {cfg.get('precision')}",
        f"- wall time: {_fmt(info.get('wall_seconds', 0.0) / 60, 1)} min in all: {_devices(info)}; "
        f"last run with torch {info.get('torch', '?')}, {info.get('threads', '?')} thread(s)",
        f"- training step time logged in metrics.jsonl: {_fmt(_logged_minutes(folder, cfg), 1)} min "
        "(the wall time above counts from the first run that recorded train_info.json)",
        f"- architecture: base {unet['base_channels']} channels, mult {unet['channel_mult']}, "
        f"{unet['num_res_blocks']} res block(s) per level, attention at {unet['attn_resolutions']} px; "
        f"{info.get('parameters', '?')} parameters",
        f"- config hash {meta.get('config_hash')}, data fingerprint {meta.get('data_fingerprint')}", "",
        "## Metrics (`clareps teacher-check`)", "",
    ]
    if check:
        s = check["settings"]
        bar = "met" if check["class_consistency"] >= CONSISTENCY_BAR else "**not met**"
        checked_step = check.get("teacher_step")
        lines += [
            f"Checked at step {checked_step} of the {cfg.get('steps')} the config plans. The bar "
            f"(class consistency >= {CONSISTENCY_BAR}) is {bar}."
            + ("" if checked_step == meta.get("step") else
               f" These weights are at step {meta.get('step')}: the numbers below are the step-{checked_step} "
               "weights' (rerun `clareps teacher-check`)."), "",
            f"- class consistency: **{_fmt(check['class_consistency'])}** of {s['per_class']} DDIM-"
            f"{s['ddim_steps']} samples per class at w={s['w']} (seed {s['seed']}) classified as their "
            "intended class by the shape judge",
            "- per class: " + ", ".join(_fmt(v, 2) for v in check["class_consistency_per_class"]),
            f"- FID on the judge's features vs {s['fid_real_images']} real test-original images: "
            f"{_fmt(check['fid_judge_features'], 2)}",
            f"- DDIM inversion to t={s['recon_t_frac']}T and decoding back ({s['recon_images']} test images,"
            f" pixels in [0,1]): RMSE {_fmt(check['recon_rmse'], 4)}, MAE {_fmt(check['recon_mae'], 4)}",
            f"- shape judge: {_judge(check)}",
            f"- measured on: {check.get('hardware')} in {_fmt(check['seconds'] / 60, 1)} min", "",
            "![samples](samples.png)", "",
        ]
    else:
        lines += ["Not measured yet: run `clareps teacher-check`.", ""]
    return write_text(folder / "MODEL_CARD.md", "\n".join(lines) + "\n")
