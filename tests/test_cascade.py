"""The attack cascade: never a weaker worst case than every attack on every point at every budget;
its carry-over, every attack's randomness drawn per point (a point meets the same attack in any
batch), our PGD and Square against the libraries', and the naming of a reduced AutoAttack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import clareps.evaluate.attacks as attacks
from clareps.evaluate.attacks import LinfPGD, RobustnessConfig, attack_key, uniform_start
from clareps.evaluate.robustness import evaluate_robustness
from clareps.evaluate.summary import summarize


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 8 * 8, 10)).eval().requires_grad_(False)


def tiny_points(model: nn.Module, n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 8, 8, generator=gen)
    y = model(x).argmax(1)
    y[::6] = (y[::6] + 1) % 10  # some points wrong before any attack
    return x, y


def cfg(schedule: str, attacks=("pgd", "cw"), **over) -> RobustnessConfig:
    base = dict(attacks=list(attacks), budgets_255=[0.5, 1, 2, 4, 8], pgd_steps=6, cw_steps=15, apgd_steps=5,
                aa_steps=3, aa_square_queries=20, batch_size=7, schedule=schedule)
    return RobustnessConfig(**dict(base, **over))


def run(model, x, y, c: RobustnessConfig) -> tuple[dict, dict]:
    points: dict = {}
    out = evaluate_robustness(model, x, y, 10, c, seed=3, points=points)
    return out, points


def test_cascade_worst_case_is_never_weaker_than_attacking_everything():
    model = tiny_model()
    x, y = tiny_points(model)
    old, p_old = run(model, x, y, cfg("independent"))
    new, p_new = run(model, x, y, cfg("cascade"))
    weaker = p_new["worst"] & ~p_old["worst"]
    assert not weaker.any()
    assert all(n <= o for n, o in zip(new["worst_case"]["accuracy"], old["worst_case"]["accuracy"]))
    assert 0 < new["worst_case"]["accuracy"][0] < new["clean_accuracy"]  # the attacks bite, but not fully
    # the saving: CW ran only on the points PGD left robust at the smallest budget
    robust_after_pgd = int(p_new["after/pgd"][0].sum())
    assert new["attacks"]["cw"]["ran_on"] == robust_after_pgd < int((model(x).argmax(1) == y).sum())
    assert new["attacks"]["pgd"]["over"] == ["pgd"] and new["attacks"]["cw"]["over"] == ["pgd", "cw"]
    assert new["carry_failed"] == 0


class MeanThreshold(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5, else class 0."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1000.0))

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([torch.zeros_like(m), self.scale * m], 1)


def test_a_point_broken_at_a_small_budget_is_carried_to_the_larger_ones(monkeypatch):
    """An attack that fools point 0 only at the smaller budget: the old order calls the point
    robust at the larger one (a violation); the cascade carries the example over, checks it once,
    and never attacks the point there."""
    model = MeanThreshold().eval().requires_grad_(False)
    x = torch.full((6, 3, 4, 4), 0.2)
    x[0] = 0.5 - 0.5 / 255  # class 0, half a grey level below the boundary
    y = torch.zeros(6, dtype=torch.long)
    calls: list[tuple[float, int]] = []

    def fake(name, model, eps, c, n_classes, seed):
        def attack(xb, yb):
            calls.append((eps, len(xb)))
            adv = xb.clone()
            if eps < 1.5 / 255:
                adv += eps  # crosses the boundary only for point 0
            return adv
        return attack

    monkeypatch.setattr(attacks, "make_attack", fake)
    c = dict(attacks=["apgd-ce"], budgets_255=[1, 2])
    old, _ = run(model, x, y, cfg("independent", **c))
    calls.clear()
    new, p_new = run(model, x, y, cfg("cascade", **c))
    assert old["attacks"]["apgd-ce"]["accuracy"] == pytest.approx([5 / 6, 1.0])  # the attack's own miss at 2/255 ...
    assert old["attacks"]["apgd-ce"]["point_violations"] == 1
    assert new["worst_case"]["accuracy"] == pytest.approx([5 / 6, 5 / 6])  # ... is not a miss of the cascade
    assert not p_new["worst"][1, 0] and new["attacks"]["apgd-ce"]["carried"] == [0, 1]
    assert new["attacks"]["apgd-ce"]["attacked"] == [6, 5] and calls == [(1 / 255, 6), (2 / 255, 5)]
    assert new["carry_failed"] == 0


def test_our_pgd_breaks_every_point_torchattacks_pgd_breaks_and_ignores_its_batch():
    import torchattacks

    model = tiny_model()
    x, y = tiny_points(model)
    eps = 2 / 255
    zero = torch.zeros_like(x)
    ours = LinfPGD(model, eps, 5, 2.5)(x, y, zero)
    theirs = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 5, steps=5, random_start=False)(x, y)
    fooled_ours, fooled_theirs = model(ours).argmax(1) != y, model(theirs).argmax(1) != y
    assert fooled_theirs.any() and not (fooled_theirs & ~fooled_ours).any()
    assert (ours - x).abs().max() <= eps + 1e-6
    start = uniform_start(0, torch.arange(len(x)), tuple(x.shape[1:]))
    full = LinfPGD(model, eps, 5, 2.5)(x, y, start)
    part = LinfPGD(model, eps, 5, 2.5)(x[10:20], y[10:20], uniform_start(0, torch.arange(10, 20), tuple(x.shape[1:])))
    assert torch.allclose(full[10:20], part, atol=1e-6)


def test_a_reduced_autoattack_is_never_called_autoattack():
    assert attack_key("autoattack", RobustnessConfig()) == "autoattack"
    for over in ({"aa_attacks": ["apgd-ce", "apgd-t"]}, {"aa_steps": 10}, {"aa_square_queries": 100}):
        assert attack_key("autoattack", RobustnessConfig(**over)) == "autoattack-reduced"
    model = tiny_model()
    x, y = tiny_points(model, 12)
    for schedule in ("independent", "cascade"):
        out, _ = run(model, x, y, cfg(schedule, ("pgd", "autoattack"), aa_attacks=["apgd-ce", "apgd-t"]))
        assert "autoattack" not in out["attacks"] and out["attacks"]["autoattack-reduced"]["params"]["version"] == \
            "reduced"
        assert out["worst_case"]["over"] == ["pgd", "autoattack-reduced"]
        keys = summarize({"robustness": out})
        assert not any(k.startswith("robust/autoattack@") for k in keys)
        # the cascade's later attacks hold a worst case up to them, so they get no row of their own
        assert any(k.startswith("robust/autoattack-reduced@") for k in keys) == (schedule == "independent")


AA_ALL = ["apgd-ce", "apgd-t", "fab-t", "square"]


@pytest.mark.parametrize("name,over", [("apgd-ce", {}), ("autoattack", {"aa_implementation": "torchattacks"}),
                                       ("autoattack", {"aa_implementation": "reference"})])
def test_every_attack_meets_a_point_the_same_way_in_any_batch(name, over):
    """Batches of all, of one, and of five in another order give each point the same example
    (each part of AutoAttack draws per point; the old per-batch seeds changed every example)."""
    model = tiny_model()
    x, y = tiny_points(model, 12)
    y = model(x).argmax(1)  # all clean-correct: every point is attacked
    ids = torch.arange(len(x))
    results = []
    for bs, order in ((12, ids), (1, ids), (5, torch.randperm(12, generator=torch.Generator().manual_seed(2)))):
        c = cfg("independent", [name], aa_attacks=AA_ALL, aa_square_queries=30, batch_size=bs, **over)
        adv, ok, _ = attacks.attack_points(name, model, x[order], y[order], ids[order], 2 / 255, c, 10, seed=3)
        back = torch.argsort(order)
        results.append((adv[back], ok[back]))
    assert 0 < int(results[0][1].sum()) < len(x)  # the attack bites, but not fully
    for adv, ok in results[1:]:
        assert torch.equal(ok, results[0][1]) and torch.allclose(adv, results[0][0], atol=1e-6)


def test_cw_stops_each_point_on_its_own_cost():
    """torchattacks stops the whole batch when the batch's cost rises; ours stops each point on its
    own, so a point's CW example is the same in any batch."""
    model = tiny_model()
    x, y = tiny_points(model, 12)
    whole, l2_whole = attacks.cw_run(model, x, y, cfg("independent", batch_size=12, cw_steps=30), 10, seed=3)
    alone, l2_alone = attacks.cw_run(model, x, y, cfg("independent", batch_size=1, cw_steps=30), 10, seed=3)
    assert len(l2_whole) == len(l2_alone) > 0 and torch.allclose(whole, alone, atol=1e-5)


@pytest.mark.parametrize("library", ["torchattacks", "pyautoattack"])
def test_our_square_is_the_library_loop_run_on_each_point_alone(library):
    """square_linf, batched, gives each point what the library's own L-inf loop gives it when the
    point is its only one and draws the same numbers."""
    from clareps.evaluate.per_point import PointStreams, square_linf

    model = tiny_model()
    x, y = tiny_points(model, 10)
    y = model(x).argmax(1)
    eps, queries, (c, _, w) = 12 / 255, 25, x.shape[1:]
    if library == "torchattacks":
        import torchattacks

        lib = torchattacks.Square(model, eps=eps, n_queries=queries, n_restarts=1)
    else:
        from pyautoattack.square import SquareAttack

        lib = SquareAttack(model, eps=eps, n_queries=queries, resc_schedule=False, device=torch.device("cpu"))
    lib.init_hyperparam(x)
    _, ours = square_linf(lib, x, y, PointStreams(5, "square"))
    fooled = model(ours).argmax(1) != y
    assert 0 < int(fooled.sum()) < len(x)
    for i in range(len(x)):
        streams = PointStreams(5, "square")  # the point's own numbers, in the order the loop uses them
        stripes, draws = streams.uniform(x[i:i + 1], (c, 1, w)), streams.uniform(x[i:i + 1], (queries, 2 + c))[0]
        queue = [stripes] + [v for row in draws for v in (row[0], row[1], row[2:])]
        lib.random_choice = lambda shape, q=queue: torch.sign(2 * q.pop(0) - 1).reshape(shape)
        lib.random_int = lambda low, high, shape=(1,), q=queue: (low + (high - low) * q.pop(0)).long().reshape(shape)
        _, theirs = lib.attack_single_run(x[i:i + 1], y[i:i + 1])
        assert torch.equal(theirs[0], ours[i])


def test_a_random_draw_other_than_the_start_fails():
    from clareps.evaluate.per_point import rand_served

    start = torch.rand(2, 3)
    with rand_served(start):
        assert torch.equal(torch.rand(torch.Size([2, 3])), start)
        with pytest.raises(RuntimeError, match="unexpected random draw"):
            torch.rand(2, 3)  # a second draw would come from the shared generator
    with rand_served(start), pytest.raises(RuntimeError):
        torch.rand(4)
    assert torch.rand(4).shape == (4,)  # restored


@pytest.mark.parametrize("name,over", [("apgd-ce", {"apgd_steps": 2}), ("cw", {"cw_steps": 10}),
                                       ("autoattack", {"aa_attacks": ["square"], "aa_square_queries": 10}),
                                       ("autoattack", {"aa_attacks": ["square"], "aa_square_queries": 10,
                                                       "aa_implementation": "reference"})])
def test_the_cascade_of_a_random_attack_is_never_weaker(name, over):
    """The cascade meets each point in other batches than the old order; with per-batch seeds a
    10-query Square left a point robust that the old order broke (weaker 1 here)."""
    model = tiny_model()
    x, y = tiny_points(model)
    _, p_old = run(model, x, y, cfg("independent", [name], **over))
    new, p_new = run(model, x, y, cfg("cascade", [name], **over))
    assert not (p_new["worst"] & ~p_old["worst"]).any()
    assert 0 < new["worst_case"]["accuracy"][-1] < new["clean_accuracy"]


@pytest.mark.parametrize("schedule", ["cascade", "independent"])
def test_autoattack_at_some_budgets_only_reports_no_worst_case_where_it_did_not_run(schedule):
    """slow_budgets_255: AutoAttack runs at 4/255 only. There it still breaks points PGD left robust
    (and running it at every budget, with its carry-over, can only break more); at the other budgets it
    attacks nothing, and neither it nor the worst case over all attacks reports an accuracy there (the
    fast attacks' worst case does)."""
    model = tiny_model()
    x, y = tiny_points(model)
    slow = torch.zeros(len(x), dtype=torch.bool)
    slow[::2] = True
    weak_pgd = dict(aa_attacks=["apgd-ce", "apgd-t"], aa_steps=5, pgd_steps=1)
    c = cfg(schedule, ("pgd", "autoattack"), slow_budgets_255=[4], **weak_pgd)
    points: dict = {}
    out = evaluate_robustness(model, x, y, 10, c, seed=3, slow=slow, points=points)
    aa = out["attacks"]["autoattack-reduced"]
    at = c.budgets_255.index(4)
    assert aa["budgets_255_run"] == [4]
    assert [a is None for a in aa["accuracy"]] == [k != at for k in range(5)]
    assert [w is None for w in out["worst_case"]["accuracy"]] == [k != at for k in range(5)]
    if schedule == "cascade":
        assert [n > 0 for n in aa["attacked"]] == [k == at for k in range(5)]
    full = evaluate_robustness(model, x, y, 10, cfg(schedule, ("pgd", "autoattack"), **weak_pgd), seed=3, slow=slow)
    # at 4/255 AutoAttack still bites beyond PGD; running it at the smaller budgets too can only add breaks
    after_pgd = float(points["after/pgd"][at, slow].float().mean())
    assert full["worst_case"]["accuracy"][at] <= out["worst_case"]["accuracy"][at] < after_pgd
    assert out["worst_case_fast"]["accuracy"] == full["worst_case_fast"]["accuracy"]
    keys = summarize({"robustness": out})
    assert "robust/worst@4/255" in keys and "robust/worst@1/255" not in keys and "robust/worst-fast@1/255" in keys
    assert aa["point_violations"] == 0  # the budgets it skipped are not compared
    everywhere = evaluate_robustness(model, x, y, 10, c, seed=3)  # AutoAttack on every point, at 4/255 only
    assert "robust/worst-fast@1/255" in summarize({"robustness": everywhere})
    with pytest.raises(ValueError, match="slow_budgets_255"):
        cfg(schedule, slow_budgets_255=[3])


@pytest.mark.parametrize("schedule", ["cascade", "independent"])
def test_progress_counts_every_point_once_per_attack_and_budget(schedule):
    model = tiny_model()
    x, y = tiny_points(model, 24)
    slow = torch.zeros(len(x), dtype=torch.bool)
    slow[::3] = True
    c = cfg(schedule, ("pgd", "cw", "autoattack"), aa_attacks=["apgd-ce"], aa_steps=2, slow_budgets_255=[2])
    counted: list[int] = []
    evaluate_robustness(model, x, y, 10, c, seed=3, slow=slow, advance=counted.append)
    assert sum(counted) == (2 * len(x) + int(slow.sum())) * len(c.budgets_255)
