"""The HTML report renders from a tiny run: every section, images embedded, nothing external; missing
inputs are named instead of failing; the teacher's state is stated."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil

import pytest

from clareps.demo import Pipeline, load_demo_config
from clareps.paths import preset
from clareps.report.html import build_report, render_report
from clareps.report.sections import versus_baselines

SECTIONS = ("results", "data", "teacher", "banks", "features", "terms", "robust", "corruptions", "background",
            "saliency", "compute")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data_cache):
    """A tiny demo run root with two methods and two seeds (the report needs nothing more)."""
    cfg = load_demo_config(preset("demo-tiny"), "demo", [f"data.cache_dir={tiny_data_cache}",
                                                         "methods=[ce,cadistill]", "seeds=[0,1]"])
    root = tmp_path_factory.mktemp("run")
    Pipeline(cfg, root, "demo", quiet=True).run_all()
    return root


def images_of(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def section(html: str, sid: str) -> str:
    start = html.index(f'<h2 id="{sid}">')
    end = html.find("<h2 ", start + 1)
    return html[start:end if end > 0 else None]


def test_report_has_every_section_with_embedded_images_and_no_links_out(tiny_run):
    html, problems = render_report(tiny_run)
    assert problems == []
    for sid in SECTIONS:
        body = section(html, sid)
        assert "Not available" not in body and 'class="error"' not in body, sid
    pngs = images_of(html)
    # paired differences, data (2), teacher samples, real | control | canonical (3), spectra, embeddings,
    # loss terms, robust, corruptions, background, saliency
    assert len(pngs) == 14 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert len(re.findall(r"\bsrc=", html)) == len(pngs)  # every image is embedded
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))  # only links inside the page
    assert "http://" not in html and "https://" not in html and "<script" not in html and "<link" not in html


def test_results_table_shows_the_aggregated_numbers(tiny_run):
    agg = json.loads((tiny_run / "results" / "results.json").read_text())
    html, _ = render_report(tiny_run)
    table = section(html, "results")
    for metric, label in (("clean/test-original", "clean acc, original"), ("corr/mean", "corruption acc, mean")):
        row = re.search(rf"<tr><td>{re.escape(label)} ↑</td>(.*?)</tr>", table.split("All methods")[1]).group(1)
        cells = re.findall(r"<td>(?:<b>)?([^<]*)", row)
        for cell, method in zip(cells, agg["methods"]):
            s = agg["metrics"][metric][method]
            assert cell == f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}", (metric, method)
    assert "CaDistill against ce" in table and "paired by seed" in table
    # the overlays show the same test images for every method: one row per method below the images
    assert "ce" in section(html, "saliency") and "cadistill" in section(html, "saliency")
    # the banks section carries each bank's engine record and measures, as `bank show` prints them
    banks = section(html, "banks")
    assert "engine iterations (mean)" in banks and "removed share of ||x_te||" in banks


def test_teacher_state_is_stated_plainly(tiny_run, tmp_path):
    html, _ = render_report(tiny_run)
    box = re.search(r'<div class="warn">(.*?)</div>', html).group(1)
    assert "not been checked" in box and "This teacher is" in box and "mean little" in box
    assert "trained for 20 steps of the 20" in box

    # a checked teacher whose samples the judge recognises gets no warning
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    teacher = run / "teacher"
    step = json.loads((teacher / "teacher.json").read_text())["step"]
    (teacher / "teacher_check.json").write_text(json.dumps(
        {"class_consistency": 0.97, "fid_judge_features": 3.2, "teacher_step": step}))
    metrics = json.loads((run / "banks" / "control" / "metrics.json").read_text())
    (run / "banks" / "control" / "metrics.json").write_text(json.dumps(dict(metrics, class_consistency=0.96)))
    log = json.loads((run / "demo.json").read_text())
    for h in log["history"]:
        h["stages"]["teacher"]["path"] = str(teacher / "teacher.safetensors")
    (run / "demo.json").write_text(json.dumps(log))
    html, _ = render_report(run)
    assert '<div class="warn">' not in html
    note = re.search(r'<div class="note">(.*?)</div>', html).group(1)
    assert "97.0 %" in note and "96.0 %" in note

    # steps short of the plan are stated, not a verdict: a teacher that meets its bar gets no warning
    info = json.loads((teacher / "teacher.json").read_text())
    (teacher / "teacher.json").write_text(json.dumps(dict(info, step=step // 2)))
    (teacher / "teacher_check.json").write_text(json.dumps(
        {"class_consistency": 0.97, "fid_judge_features": 3.2, "teacher_step": step // 2}))
    html, _ = render_report(run)
    assert '<div class="warn">' not in html and f"trained for {step // 2:,} steps of the" in html
    (teacher / "teacher.json").write_text(json.dumps(info))
    (teacher / "teacher_check.json").write_text(json.dumps(
        {"class_consistency": 0.97, "fid_judge_features": 3.2, "teacher_step": step}))

    # the teacher is judged by teacher-check alone: the control bank's lower figure (another protocol)
    # is shown as what it is, not as "below its bar"
    (run / "banks" / "control" / "metrics.json").write_text(json.dumps(dict(metrics, class_consistency=0.80)))
    html, _ = render_report(run)
    assert '<div class="warn">' not in html and "below its bar" not in html
    note = re.search(r'<div class="note">(.*?)</div>', html).group(1)
    assert "80.0 %" in note and "another protocol" in note and "not compared with the bar" in note
    (teacher / "teacher_check.json").write_text(json.dumps(
        {"class_consistency": 0.70, "fid_judge_features": 3.2, "teacher_step": step}))
    html, _ = render_report(run)
    assert "below its bar (class consistency 70.0 %" in re.search(r'<div class="warn">(.*?)</div>', html).group(1)


def test_compute_counts_the_teachers_own_training_time(tiny_run, tmp_path):
    """A teacher copied into the run root took no time there: its train_info.json says what it cost."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "teacher" / "train_info.json").write_text(json.dumps({"wall_seconds": 1234.0, "device": "CPU (test)"}))
    log = json.loads((run / "demo.json").read_text())
    log["built"]["teacher"]["seconds"] = 0.03  # what copying the shipped teacher costs
    for h in log["history"]:
        h["stages"]["teacher"]["path"] = str(run / "teacher" / "teacher.safetensors")
    (run / "demo.json").write_text(json.dumps(log))
    html, _ = render_report(run)
    row = re.search(r"<tr><td>teacher training</td>(.*?)</tr>", section(html, "compute")).group(1)
    assert "20.6 min" in row and "CPU (test)" in row


def test_missing_inputs_are_named_not_fatal(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "results")
    shutil.rmtree(run / "banks" / "canonical")
    html, problems = render_report(run)
    assert problems == []
    for sid in ("results", "robust", "corruptions", "background", "saliency", "banks"):
        assert "Not available" in section(html, sid), sid
    for sid in ("data", "teacher", "features"):  # control and feat-real banks still compare
        assert "Not available" not in section(html, sid), sid

    empty = tmp_path / "empty"
    empty.mkdir()
    html, problems = render_report(empty)
    assert problems == [] and all("Not available" in section(html, sid) for sid in SECTIONS if sid != "compute")
    assert "was not made by <code>clareps demo</code>" in html


def test_features_section_reads_the_separability_the_bank_metrics_measured(tiny_run, monkeypatch):
    """A measured bank's NMI and probe come from its metrics.json (only feat-real's are computed), and
    are what the report computes when that file is stale."""
    import os

    import clareps.measures as metrics

    calls = []
    real_nmi = metrics.kmeans_nmi
    monkeypatch.setattr(metrics, "kmeans_nmi", lambda *a, **k: calls.append(1) or real_nmi(*a, **k))
    read = section(render_report(tiny_run)[0], "features")
    canonical = json.loads((tiny_run / "banks" / "canonical" / "metrics.json").read_text())
    assert f"<td>canonical</td><td>{canonical['items']}</td><td>{canonical['nmi_features']:.3f}</td>" in read
    assert len(calls) == 1
    sides = [tiny_run / "banks" / kind / "bank.json" for kind in ("canonical", "control")]
    times = [side.stat().st_mtime for side in sides]
    try:
        for side in sides:
            os.utime(side, (side.stat().st_atime, side.stat().st_mtime + 3600))
        assert section(render_report(tiny_run)[0], "features") == read and len(calls) == 4
    finally:
        for side, t in zip(sides, times):
            os.utime(side, (side.stat().st_atime, t))


def test_report_cli(tiny_run, tmp_path, run_cli):
    out = tmp_path / "page.html"
    code, stdout, err = run_cli("report", tiny_run, "--out", out)
    assert code == 0, err
    assert stdout.strip() == f"report: {out}"
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert build_report(tiny_run) == tiny_run / "report.html"

    # --figures: the page's images as files, by section, the same bytes as embedded
    code, stdout, err = run_cli("report", tiny_run, "--out", out, "--figures", tmp_path / "figs")
    assert code == 0, err
    assert stdout.strip().endswith(f"figures: {tmp_path / 'figs'}")
    files = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert files[0] == "background-1.png" and "results-1.png" in files and "robust-1.png" in files
    assert sorted((tmp_path / "figs" / f).read_bytes() for f in files) == sorted(images_of(out.read_text()))

    code, _, err = run_cli("report", tmp_path / "nope")
    assert code == 2 and "no run root at" in err


def test_versus_baselines_shows_the_largest_budget_any_method_survives():
    def stat(mean):
        return {"mean": mean, "std": 0.01, "n": 2, "seeds": [0, 1], "values": [mean, mean]}

    metrics = {"robust/worst@2/255": {"ce": stat(0.2), "cadistill": stat(0.3)},
               "robust/worst@4/255": {"ce": stat(0.0), "cadistill": stat(0.05)},
               "robust/worst@8/255": {"ce": stat(0.0), "cadistill": stat(0.0)}}
    html = versus_baselines({"methods": ["ce", "cadistill"], "metrics": metrics})
    assert "4/255" in html and "8/255" not in html


def test_the_forest_of_paired_differences_puts_every_gain_on_the_right():
    from clareps.report.figures import better_is_right, paired_forest

    gap_lower = {"mean": -0.02, "low": -0.03, "high": -0.01}  # the background gap shrank by 2 points
    assert better_is_right(gap_lower, lower_is_better=True) == pytest.approx((2.0, 1.0, 3.0))
    assert better_is_right(gap_lower, lower_is_better=False) == pytest.approx((-2.0, -3.0, -1.0))
    assert better_is_right({"mean": 0.05, "low": None, "high": None}, False) == pytest.approx((5.0, 5.0, 5.0))
    paired = {"cadistill-vs-ce": {"bg/gap": dict(gap_lower), "clean/test-original": {"mean": 0.0, "low": -0.01,
                                                                                      "high": 0.01}},
              "cadistill-vs-control": {"bg/gap": dict(gap_lower)}}
    png = paired_forest(paired, ["clean/test-original", "bg/gap"], ["clean", "gap"], ("bg/gap",))
    assert png.startswith(b"\x89PNG")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="numba starts a thread per core: one core cannot show it")
def test_the_umap_embedding_leaves_torch_on_its_thread_count():
    """numba's OpenMP pool (UMAP's kernels) is torch's: without care it raised torch to a thread per core,
    so a student trained in the same process after a report came out other bytes."""
    import torch

    from clareps.report.embed import embed_2d

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xy = embed_2d(torch.randn(60, 8, generator=torch.Generator().manual_seed(0)), "umap")
        assert xy.shape == (60, 2) and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
