"""The evaluation suite: each metric on a case with a known answer, and the two CLI verbs end to end."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from clareps.config import build_config
from clareps.data.imageset import ImageSet
from clareps.errors import ClarepsError
from clareps.evaluate.aggregate import aggregate, to_csv, to_markdown
from clareps.evaluate.background import background_metrics
from clareps.evaluate.corruptions import corrupt_images, evaluate_corruptions, mce, CorruptionConfig
from clareps.evaluate.robustness import RobustnessConfig, evaluate_robustness, monotone_violations
from clareps.evaluate.saliency import SaliencyConfig, evaluate_saliency, foreground_share
from clareps.evaluate.suite import class_ranks, select

C, S = 4, 32  # classes, image size (imagecorruptions needs >= 32 px)


def fixed_mask() -> torch.Tensor:
    m = torch.zeros(1, 1, S, S)
    m[..., 8:24, 10:22] = 1
    return m


def synthetic_variants(n_per_class: int = 6, seed: int = 0) -> tuple[dict[str, ImageSet], torch.Tensor]:
    """Mixed-same / mixed-rand pairs: the same foregrounds (inside one fixed mask) on a flat
    background whose grey level codes the class (same) or a random class (rand)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(C).repeat_interleave(n_per_class)
    n, m = len(y), fixed_mask()
    fg = torch.rand(n, 3, S, S, generator=g) * 0.5 + 0.1 * y.view(-1, 1, 1, 1)
    rand_bg = torch.randint(0, C, (n,), generator=g)
    level = lambda k: (0.2 + 0.2 * k).view(-1, 1, 1, 1).float()  # noqa: E731
    sets = {}
    for name, bg in (("test-mixed-same", y), ("test-mixed-rand", rand_bg)):
        x = fg * m + level(bg) * (1 - m)
        sets[name] = ImageSet(images=x.clamp(0, 1), labels=y, masks=m.expand(n, 1, S, S).clone(),
                              bg_source=bg, num_classes=C)
    return sets, rand_bg


class MaskedLinear(nn.Module):
    """logits = W (x * mask) + b: reads only the pixels inside ``mask`` (all pixels when None)."""

    def __init__(self, mask: torch.Tensor | None, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(3 * S * S, C)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(C, 3 * S * S, generator=g))
            if mask is not None:
                self.lin.weight.mul_(mask.expand(1, 3, S, S).reshape(1, -1))

    def forward(self, x):
        return self.lin(x.flatten(1))


class BackgroundReader(nn.Module):
    """Predicts the class whose grey level matches the image's corner pixel (outside the mask)."""

    def __init__(self):
        super().__init__()
        self.levels = nn.Parameter(0.2 + 0.2 * torch.arange(C).float())

    def forward(self, x):
        return -(x[:, 0, 0, 0, None] - self.levels) ** 2


class Constant(nn.Module):
    def __init__(self, cls: int = 0, classes: int = C):
        super().__init__()
        self.logits = nn.Parameter(5 * torch.nn.functional.one_hot(torch.tensor(cls), classes).float())

    def forward(self, x):
        return self.logits.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


def tiny_attacks(attacks=("pgd", "cw", "apgd-ce", "autoattack"), budgets=(8,), **over) -> RobustnessConfig:
    cfg = dict(attacks=list(attacks), budgets_255=list(budgets), pgd_steps=5, cw_steps=10, apgd_steps=5,
               aa_steps=3, aa_square_queries=20, batch_size=64)
    return RobustnessConfig(**dict(cfg, **over))


# -- background --------------------------------------------------------------------------------------
def test_foreground_only_model_has_zero_background_gap():
    sets, _ = synthetic_variants()
    out = background_metrics(MaskedLinear(fixed_mask()), sets)
    assert out["bg_gap"] == 0.0
    assert out["variants"]["test-mixed-same"]["n"] == len(sets["test-mixed-same"])


def test_background_reader_has_the_hand_computed_gap():
    sets, rand_bg = synthetic_variants()
    out = background_metrics(BackgroundReader(), sets)
    y = sets["test-mixed-rand"].labels
    assert out["variants"]["test-mixed-same"]["accuracy"] == 1.0
    assert out["bg_gap"] == pytest.approx(1.0 - (rand_bg == y).float().mean().item())
    assert out["bg_gap"] > 0.3  # so the zero gap above is not an accident of the data
    per_class_rand = [(rand_bg[y == c] == c).float().mean().item() for c in range(C)]
    assert out["bg_gap_per_class"] == pytest.approx([1 - a for a in per_class_rand])


# -- a constant model is at chance everywhere ------------------------------------------------------------
def test_constant_model_is_at_chance(tmp_path):
    sets, _ = synthetic_variants()
    data = sets["test-mixed-rand"]
    model = Constant(cls=2)
    clean = background_metrics(model, sets)
    assert all(v["accuracy"] == 1 / C for v in clean["variants"].values())
    assert clean["variants"]["test-mixed-rand"]["per_class"] == [0.0, 0.0, 1.0, 0.0]
    rob = evaluate_robustness(model, data.images, data.labels, C, tiny_attacks(budgets=(2, 8)))
    for att in rob["attacks"].values():
        assert att["accuracy"] == [1 / C, 1 / C]
    assert rob["worst_case"]["accuracy"] == [1 / C, 1 / C]
    cor = evaluate_corruptions(model, data.images, data.labels,
                               CorruptionConfig(types=["gaussian_noise", "contrast"], severities=[1, 5]))
    assert cor["mean_accuracy"] == 1 / C


# -- saliency ------------------------------------------------------------------------------------------
def test_attribution_share_is_one_for_a_foreground_only_model():
    sets, _ = synthetic_variants(n_per_class=3)
    d = sets["test-mixed-same"]
    out, maps = evaluate_saliency(MaskedLinear(fixed_mask()), d.images, d.labels, d.masks, C,
                                  SaliencyConfig(ig_steps=8, save_maps=2))
    for method in ("saliency", "integrated-gradients"):
        assert out["methods"][method]["fg_share"] == pytest.approx(1.0, abs=1e-6)
        assert out["methods"][method]["n"] == len(d)
        assert maps[method].shape == (2, S, S)
    # the model that reads only the background puts no mass on the foreground
    inverse, _ = evaluate_saliency(MaskedLinear(1 - fixed_mask()), d.images, d.labels, d.masks, C,
                                   SaliencyConfig(methods=["saliency"]))
    assert inverse["methods"]["saliency"]["fg_share"] == pytest.approx(0.0, abs=1e-6)


def test_uniform_saliency_share_equals_the_mask_area(tiny_data_cache):
    from clareps.data.benchmark import BenchmarkConfig, load_split

    d = load_split(BenchmarkConfig(n_train=200, n_test=50), "test-original", cache_dir=tiny_data_cache)
    d = d.subset(range(12))
    model = MaskedLinear(None)
    with torch.no_grad():
        model.lin.weight.fill_(1.0)  # the same weight on every pixel: saliency is flat
    model.lin.weight.data[1] *= -2
    out, _ = evaluate_saliency(model, d.images, d.labels[:12] % C, d.masks, C, SaliencyConfig(methods=["saliency"]))
    per_image_area = d.masks.flatten(1).mean(1)
    assert out["methods"]["saliency"]["fg_share"] == pytest.approx(per_image_area.mean().item(), rel=1e-5)
    assert out["fg_area"] == pytest.approx(per_image_area.mean().item(), rel=1e-6)
    zero = foreground_share(torch.zeros(2, S, S), d.masks[:2])
    assert torch.isnan(zero).all()


# -- robustness ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_student(tmp_path_factory, tiny_data_cache):
    """A width-4 small CNN trained briefly (ce) on the tiny benchmark: a real run directory."""
    from clareps.distill.config import DistillConfig
    from clareps.distill.trainer import DistillTrainer

    run = tmp_path_factory.mktemp("ce-s0")
    cfg = build_config(DistillConfig, {
        "method": "ce", "seed": 0, "student": {"name": "small-cnn", "width": 4}, "epochs": 4, "batch_size": 20,
        "data": {"kind": "benchmark", "benchmark": {"n_train": 200, "n_test": 50}, "cache_dir": tiny_data_cache},
        "precision": "fp32", "device": "cpu", "log_every": 100})
    DistillTrainer(cfg, run, quiet=True).train()
    return run


def test_a_student_loads_channels_last_and_computes_the_same_function(trained_student, tiny_data_cache):
    from clareps.classifiers.checkpoint import load_classifier
    from clareps.data.benchmark import BenchmarkConfig, load_split
    from clareps.evaluate.suite import load_student

    model, _ = load_student(trained_student)
    plain, _ = load_classifier(trained_student / "student.safetensors")
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = load_split(BenchmarkConfig(n_train=200, n_test=50), "test-original", cache_dir=tiny_data_cache).images[:20]
    x = x.float().requires_grad_(True)
    grad = torch.autograd.grad(model(x).logsumexp(1).sum(), x)[0]
    assert torch.allclose(model(x), plain(x), atol=1e-5)
    assert torch.allclose(grad, torch.autograd.grad(plain(x).logsumexp(1).sum(), x)[0], atol=1e-5)


def test_larger_budget_never_raises_pgd_accuracy(trained_student, tiny_data_cache):
    from clareps.data.benchmark import BenchmarkConfig, load_split
    from clareps.evaluate.suite import load_student

    model, _ = load_student(trained_student / "student.safetensors")
    d = load_split(BenchmarkConfig(n_train=200, n_test=50), "test-original", cache_dir=tiny_data_cache)
    budgets = (0.5, 1, 2, 4, 8, 16)
    rob = evaluate_robustness(model, d.images, d.labels, 10, tiny_attacks(("pgd", "apgd-ce"), budgets, pgd_steps=10))
    for name in ("pgd", "apgd-ce"):
        acc = rob["attacks"][name]["accuracy"]
        assert all(b <= a for a, b in zip(acc, acc[1:])), (name, acc)
        assert acc[0] <= rob["clean_accuracy"]
    assert rob["attacks"]["pgd"]["accuracy"][-1] < rob["clean_accuracy"]  # the attack does bite
    assert rob["monotone_violations"] == []


def test_worst_case_is_at_most_each_attack(trained_student, tiny_data_cache):
    from clareps.data.benchmark import BenchmarkConfig, load_split
    from clareps.evaluate.suite import load_student

    model, _ = load_student(trained_student)
    d = load_split(BenchmarkConfig(n_train=200, n_test=50), "test-original", cache_dir=tiny_data_cache)
    rob = evaluate_robustness(model, d.images, d.labels, 10, tiny_attacks(budgets=(2, 8)))
    worst = rob["worst_case"]["accuracy"]
    for att in rob["attacks"].values():
        assert all(w <= a for w, a in zip(worst, att["accuracy"]))
    assert set(rob["attacks"]) == {"pgd", "cw", "apgd-ce", "autoattack-reduced"}  # 3 steps: not "standard"
    assert rob["attacks"]["autoattack-reduced"]["params"]["n_classes"] == 10


def test_examples_outside_the_ball_are_clipped_and_counted(monkeypatch):
    import clareps.evaluate.attacks as attacks
    import clareps.evaluate.robustness as rob

    sets, _ = synthetic_variants()
    d = sets["test-mixed-same"]
    model = MaskedLinear(fixed_mask())
    clean = (model(d.images).argmax(1) == d.labels).float().mean().item()

    def cheat(name, model, eps, cfg, n_classes, seed):  # pushes every pixel far outside the ball
        return lambda x, y, *start: torch.where(torch.arange(len(x))[:, None, None, None] == 0, float("nan"), x + 0.5)

    monkeypatch.setattr(attacks, "make_attack", cheat)
    out = rob.evaluate_robustness(model, d.images, d.labels, C, tiny_attacks(("pgd",), (1,)))
    pgd = out["attacks"]["pgd"]
    assert pgd["max_linf_excess_clipped"] == pytest.approx(0.5 - 1 / 255, abs=1e-6)
    assert pgd["non_finite_replaced"] == 1
    correct = model(d.images).argmax(1) == d.labels  # only these are attacked
    x = (d.images + 1 / 255).clamp(0, 1)  # what scoring must have seen ...
    first = int(correct.nonzero()[0])
    x[first] = d.images[first]  # ... but the first attacked point came back NaN: scored clean
    ok = (model(x).argmax(1) == d.labels) & correct
    assert pgd["accuracy"] == [pytest.approx(ok.float().mean().item())] and pgd["clean_accuracy"] == clean


def test_monotone_violations_are_flagged():
    assert monotone_violations([1, 2, 4], [0.5, 0.4, 0.3]) == []
    flags = monotone_violations([4, 1, 2], [0.3, 0.5, 0.45])  # unsorted budgets: 0.45 -> 0.3 is fine
    assert flags == []
    flags = monotone_violations([1, 2, 4], [0.5, 0.4, 0.45])
    assert len(flags) == 1 and flags[0]["from_eps"] == 2 and flags[0]["increase"] == pytest.approx(0.05)


# -- corruptions ----------------------------------------------------------------------------------------
def test_corruptions_are_deterministic_under_a_seed():
    x = synthetic_variants(n_per_class=1)[0]["test-mixed-rand"].images
    state = np.random.get_state()[1].copy()
    for name in ("gaussian_noise", "impulse_noise", "motion_blur"):
        a, b = corrupt_images(x, name, 3, seed=1), corrupt_images(x, name, 3, seed=1)
        assert torch.equal(a, b)
        assert not torch.equal(a, corrupt_images(x, name, 3, seed=2))
        assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert np.array_equal(np.random.get_state()[1], state)  # the global numpy generator is left alone
    assert torch.equal(corrupt_images(x, "fog", 0), x)
    gray = corrupt_images(x[:, :1], "contrast", 2)
    assert gray.shape == x[:, :1].shape


def test_severity_zero_accuracy_is_clean_accuracy(tmp_path):
    d = synthetic_variants()[0]["test-mixed-rand"]
    model = MaskedLinear(None, seed=3)
    cfg = CorruptionConfig(types=["shot_noise", "pixelate"], severities=[0, 2])
    out = evaluate_corruptions(model, d.images, d.labels, cfg, cache_dir=tmp_path)
    assert out["accuracy"]["shot_noise"][0] == out["clean_accuracy"] == out["accuracy"]["pixelate"][0]
    again = evaluate_corruptions(model, d.images, d.labels, cfg, cache_dir=tmp_path)  # from the cache
    assert again["accuracy"] == out["accuracy"] and len(list(tmp_path.iterdir())) == 2
    assert out["mean_accuracy"] == pytest.approx(np.mean([out["accuracy"][t][1] for t in cfg.types]))


def test_mce_matches_a_hand_computation():
    ref = {"severities": [1, 2], "accuracy": {"fog": [0.8, 0.6], "snow": [0.5, 0.5]}}
    res = {"severities": [1, 2], "accuracy": {"fog": [0.9, 0.7], "snow": [0.5, 0.25]}}
    out = mce(res, ref)
    assert out["ce"]["fog"] == pytest.approx((0.1 + 0.3) / (0.2 + 0.4))
    assert out["ce"]["snow"] == pytest.approx((0.5 + 0.75) / (0.5 + 0.5))
    assert out["mce"] == pytest.approx(((0.4 / 0.6) + 1.25) / 2)


# -- selection and aggregation -----------------------------------------------------------------------------
def test_selection_is_balanced_and_nested():
    y = torch.arange(10).repeat(7)
    d = ImageSet(images=torch.zeros(70, 1, 2, 2), labels=y, num_classes=10)
    small, info = select(d, 20, seed=3, split="x")
    big, _ = select(d, 50, seed=3, split="x")
    assert set(small) <= set(big) and info["n"] == 20 and info["per_class"] == 2
    assert np.bincount(y[small].numpy(), minlength=10).tolist() == [2] * 10
    assert select(d, None, 0, "x")[1]["selection"] == "all"
    assert not np.array_equal(class_ranks(y, 10, 0), class_ranks(y, 10, 1))


def fake_run(method, seed, acc, gap, cfg_hash="h"):
    return {"format": "clareps-eval/1", "mode": "full", "config_hash": cfg_hash, "eval_seed": 0, "method": method,
            "train_seed": seed, "file": f"{method}-{seed}",
            "summary": {"clean/test-original": acc, "bg/gap": gap},
            "corruptions": {"severities": [1], "accuracy": {"fog": [acc - 0.2]}, "mean_accuracy": acc - 0.2}}


def test_aggregation_matches_a_hand_computation():
    runs = [fake_run("cadistill", s, a, g) for s, a, g in ((0, 0.6, 0.1), (1, 0.4, 0.2), (2, 0.5, 0.15))]
    runs += [fake_run("ce", s, a, g) for s, a, g in ((0, 0.7, 0.2), (1, 0.5, 0.2))]
    agg = aggregate(runs)
    assert agg["methods"] == ["ce", "cadistill"]
    assert list(agg["metrics"]) == ["clean/test-original", "bg/gap", "corr/mce"]
    cell = agg["metrics"]["clean/test-original"]["cadistill"]
    assert cell["mean"] == pytest.approx(0.5) and cell["std"] == pytest.approx(0.1)  # sample std of .6 .4 .5
    assert cell["seeds"] == [0, 1, 2] and cell["n"] == 3
    ce = agg["metrics"]["clean/test-original"]["ce"]
    assert ce["std"] == pytest.approx(np.std([0.7, 0.5], ddof=1))
    # mCE against the ce run of the same seed: errors (1 - (acc - .2)) / (1 - (ce_acc - .2))
    mce_cad = agg["metrics"]["corr/mce"]["cadistill"]["values"]
    assert mce_cad[0] == pytest.approx(0.6 / 0.5) and mce_cad[1] == pytest.approx(0.8 / 0.7)
    assert mce_cad[2] == pytest.approx(0.7 / np.mean([0.5, 0.7]))  # no ce seed 2: the ce mean
    md = to_markdown(agg)
    assert "| **60.0 ± 14.1** | 50.0 ± 10.0 |" in md  # clean acc: ce (best, bold), cadistill
    assert "| 20.0 ± 0.0 | **15.0 ± 5.0** |" in md  # the lower background gap is the better one
    rows = list(csv.DictReader(io.StringIO(to_csv(agg))))
    row = next(r for r in rows if r["metric"] == "bg/gap" and r["method"] == "cadistill")
    assert float(row["mean"]) == pytest.approx(0.15) and row["seeds"] == "0 1 2"
    single = aggregate([fake_run("kd", 0, 0.5, 0.1)])
    assert single["metrics"]["bg/gap"]["kd"]["std"] is None and "| 10.0 |" in to_markdown(single)


def test_aggregation_refuses_mixed_settings_and_duplicates(tmp_path):
    from clareps.evaluate.aggregate import load_runs

    paths = []
    for i, run in enumerate([fake_run("ce", 0, 0.5, 0.1), fake_run("ce", 1, 0.5, 0.1, cfg_hash="other")]):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(run))
    with pytest.raises(ClarepsError, match="different evaluation settings"):
        load_runs(paths)
    paths[1].write_text(json.dumps(fake_run("ce", 0, 0.5, 0.1)))
    with pytest.raises(ClarepsError, match="appears twice"):
        load_runs(paths)


# -- the CLI end to end ----------------------------------------------------------------------------------
def test_evaluate_and_aggregate_cli(trained_student, tmp_path, run_cli):
    args = ["evaluate", "--student", trained_student, "--fast", "-q", "--set", "robustness.budgets_255=[2,8]",
            "--set", "corruptions.types=[gaussian_noise,contrast]", "--set", "saliency.n_images=10"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    res = json.loads((trained_student / "eval-fast.json").read_text())
    assert res["method"] == "ce" and res["train_seed"] == 0 and res["eval_seed"] == 0 and res["mode"] == "fast"
    assert set(res["clean"]["variants"]) == {"test-original", "test-only-fg", "test-only-bg", "test-mixed-same",
                                             "test-mixed-rand"}
    for block in ("clean", "robustness", "corruptions", "saliency"):
        assert res["seconds"][block] >= 0
    imgs = res["robustness"]["images"]
    assert imgs["split"] == "test-original" and imgs["n"] == 50 and imgs["seed"] == 0
    assert res["robustness"]["slow_images"]["n"] == 20 and res["robustness"]["worst_case"]["n"] == 20
    assert res["robustness"]["worst_case_fast"]["n"] == 50
    assert "robust/worst@8/255" in res["summary"] and "saliency/integrated-gradients" in res["summary"]
    assert all(res["checks"].values()) and res["data"]["matches_student"] is True
    assert (trained_student / "eval-fast-maps.safetensors").exists()
    code, out, _ = run_cli(*args)
    assert code == 0 and "reused" in out
    # --label: the results grouped under a variant's name, without evaluating again; back to "ce"
    for label in ("ce-linear", "ce"):
        code, out, err = run_cli(*args, "--label", label)
        assert code == 0 and "reused" in out, err
        assert json.loads((trained_student / "eval-fast.json").read_text())["method"] == label
    code, _, err = run_cli(*args, "--label", "kd")
    assert code == 2 and "--label 'kd': name it ce or ce-SOMETHING" in err and "Traceback" not in err
    # a second "seed" of another method: the same results under other labels
    other = tmp_path / "kd-s1.json"
    other.write_text(json.dumps(dict(res, method="kd", train_seed=1)))
    code, out, err = run_cli("aggregate", trained_student, other, "--fast", "--out", tmp_path / "t")
    assert code == 0, err
    table = json.loads((tmp_path / "t" / "results.json").read_text())
    assert table["methods"] == ["ce", "kd"]
    assert (tmp_path / "t" / "results.md").read_text().startswith("| metric (%) | ce | kd |")
    assert (tmp_path / "t" / "results.csv").exists() and "corr/mce" in table["metrics"]
    # mCE of a student against itself is 1 on every type
    code, _, err = run_cli(*args, "--set", "components=[corruptions]", "--out", tmp_path / "m.json",
                           "--reference", trained_student / "eval-fast.json")
    assert code == 0, err
    cor = json.loads((tmp_path / "m.json").read_text())["corruptions"]
    assert cor["mce"] == pytest.approx(1.0) and set(cor["ce"]) == {"gaussian_noise", "contrast"}
    code, _, err = run_cli("evaluate", "--student", tmp_path / "nothing")
    assert code == 2 and "no student checkpoint" in err and "Traceback" not in err


def test_shipped_preset_modes_and_config_errors(tmp_path):
    from clareps.evaluate.suite import load_eval_config, result_name
    from clareps.paths import preset

    full = load_eval_config(preset("evaluate-default"), "full")
    assert full.robustness.budgets_255 == [1, 2, 4, 8] and full.robustness.pgd_steps == 20
    assert len(full.corruptions.types) == 15 and full.corruptions.severities == [1, 2, 3, 4, 5]
    fast = load_eval_config(preset("evaluate-default"), "fast", ["robustness.n_images=10"])
    assert fast.robustness.n_images == 10 and len(fast.robustness.budgets_255) == 1
    assert load_eval_config(preset("evaluate-default"), "demo").robustness.aa_attacks == ["apgd-ce", "apgd-t"]
    std = load_eval_config(preset("evaluate-default"), "standard")  # the study's declared floor (issue 17)
    r = std.robustness
    assert std.clean.n_images is None and len(std.clean.variants) == 5
    assert {1, 2, 4, 8} <= set(r.budgets_255) and r.pgd_steps >= 20 and r.n_images >= 1000
    assert r.slow_n_images >= 200 and 2 in r.budgets_255 and {"apgd-ce", "apgd-t"} <= set(r.aa_attacks)
    assert std.corruptions.n_images >= 500 and len(std.corruptions.types) == 15 and len(std.corruptions.severities) == 5
    assert std.saliency.n_images >= 200
    assert result_name("full") == "eval.json" and result_name("demo") == "eval-demo.json"
    with pytest.raises(ClarepsError, match="no 'nope' section"):
        load_eval_config(preset("evaluate-default"), "nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("full:\n  robustness:\n    atacks: [pgd]\n")
    with pytest.raises(ClarepsError, match="unknown config key 'robustness.atacks'"):
        load_eval_config(bad, "full")
    bad.write_text("full:\n  corruptions:\n    types: [rain]\n")
    with pytest.raises(ClarepsError, match="unknown corruption types"):
        load_eval_config(bad, "full")


def test_custom_autoattack_is_labelled_and_uses_n_classes():
    import torchattacks

    from clareps.evaluate.robustness import attack_params, make_attack

    cfg = tiny_attacks(aa_attacks=["apgd-t"], aa_implementation="torchattacks")
    atk = make_attack("autoattack", Constant(), 8 / 255, cfg, n_classes=C, seed=0)
    assert isinstance(atk, torchattacks.APGDT) and atk.n_target_classes == C - 1
    full = make_attack("autoattack", Constant(), 8 / 255, RobustnessConfig(aa_implementation="torchattacks"),
                       n_classes=C, seed=0)
    assert [type(a).__name__ for a in full.attacks] == ["PerPointAPGD", "PerPointAPGDT", "FAB", "PerPointSquare"]
    assert full.attacks[2].n_target_classes == C - 1 and full.attacks[0].steps == 100
    assert attack_params("autoattack", RobustnessConfig(), C)["version"] == "standard"
    assert attack_params("autoattack", cfg, C)["version"] == "reduced"


def test_reference_autoattack_gets_the_config_and_n_classes():
    from clareps.evaluate.attacks import ReferenceAutoAttack, make_attack

    std = make_attack("autoattack", Constant(), 8 / 255, RobustnessConfig(aa_implementation="reference"), C, 0)
    assert isinstance(std, ReferenceAutoAttack) and std.aa.version == "standard"
    assert std.aa.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"] and std.aa.apgd.n_iter == 100
    assert std.aa.apgd_targeted.n_target_classes == std.aa.fab.n_target_classes == C - 1
    red = make_attack("autoattack", Constant(), 8 / 255,
                      tiny_attacks(aa_attacks=["apgd-ce", "apgd-t"], aa_implementation="reference"), C, 0)
    assert red.aa.version == "custom" and red.aa.attacks_to_run == ["apgd-ce", "apgd-t"]
    assert red.aa.apgd.n_iter == red.aa.apgd_targeted.n_iter == 3 and red.aa.apgd.n_restarts == 1
    x = torch.rand(6, 3, S, S)
    adv = red(x, Constant()(x).argmax(1))  # a constant model cannot be fooled: the images come back
    assert torch.equal(adv, x)


def test_paired_interval_matches_a_hand_computation():
    from clareps.evaluate.paired import by_method, paired_difference, paired_table

    def cell(seeds, values):
        return {"seeds": seeds, "values": values}

    # differences 0.02, 0.04, 0.00 (seed 3 has no partner): mean 0.02, sd 0.02, t(0.975, 2) = 4.302653
    a, b = cell([0, 1, 2, 3], [0.52, 0.64, 0.70, 0.9]), cell([0, 1, 2], [0.50, 0.60, 0.70])
    d = paired_difference(a, b)
    half = 4.302652729911275 * 0.02 / 3 ** 0.5
    assert d["seeds"] == [0, 1, 2] and d["mean"] == pytest.approx(0.02) and d["std"] == pytest.approx(0.02)
    assert (d["low"], d["high"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert d["verdict"] == "no detectable difference"
    # 0.05, 0.06, 0.07, 0.05, 0.07: mean 0.06, sd 0.01, t(0.975, 4) = 2.776445 -> [0.04758, 0.07242]
    a, b = cell(list(range(5)), [0.55, 0.66, 0.77, 0.85, 0.97]), cell(list(range(5)), [0.5, 0.6, 0.7, 0.8, 0.9])
    d = paired_difference(a, b)
    assert d["low"] == pytest.approx(0.06 - 2.776445105 * 0.01 / 5 ** 0.5) and d["verdict"] == "better"
    assert paired_difference(a, b, lower_is_better=True)["verdict"] == "worse"
    assert paired_difference(b, a)["verdict"] == "worse"
    assert paired_difference(cell([0], [0.6]), cell([0, 1], [0.5, 0.4]))["verdict"] == "too few seeds"
    table = paired_table({"corr/mce": {"cadistill": a, "ce": b, "control": b}, "clean/x": {"ce": b}}, ("corr/mce",))
    assert set(table) == {"cadistill-vs-ce", "cadistill-vs-control"} and list(table["cadistill-vs-ce"]) == ["corr/mce"]
    assert table["cadistill-vs-ce"]["corr/mce"]["verdict"] == "worse"  # a higher mCE is worse
    # CaDistill on the matched-source bank gets its own comparisons, grouped after cadistill's
    both = paired_table({"corr/mce": {"cadistill-matched": b, "cadistill": a, "ce": b}}, ("corr/mce",))
    assert list(both) == ["cadistill-vs-ce", "cadistill-matched-vs-ce", "cadistill-matched-vs-cadistill"]
    assert both["cadistill-matched-vs-ce"]["corr/mce"]["differences"] == [0.0] * 5
    assert both["cadistill-matched-vs-cadistill"]["corr/mce"]["verdict"] == "better"  # b's mCE is below a's
    assert by_method(dict(sorted(both.items()))) == {
        "cadistill": ["cadistill-vs-ce"], "cadistill-matched": ["cadistill-matched-vs-ce", "cadistill-matched-vs-cadistill"]}


def test_the_table_names_autoattack_images_only_where_autoattack_ran():
    from clareps.evaluate.aggregate import aggregate, load_runs, to_markdown

    data = Path(__file__).resolve().parents[1] / "docs" / "studies" / "data"
    with_aa = to_markdown(aggregate(load_runs([data / "cadistill/students/ce-s0/eval-standard.json"])))
    without = to_markdown(aggregate(load_runs([data / "fast/students/ce-s0/eval-standard.json"])))
    assert "autoattack 200 of 1000" in with_aa and "on the AutoAttack images only" in with_aa
    assert "autoattack" not in without.split("Images:")[1].lower().replace("(no autoattack)", "")
    assert "over the attacks run (no AutoAttack) on all robustness images" in without
