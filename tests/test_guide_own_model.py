"""docs/guides/own-model.md runs as written, at toy size.

Substitution convention: the guide's code is run verbatim; only the world around it is small. The test
works in a temporary folder (the current directory) where it writes what the guide assumes exists:

- ``my-unet/``: a tiny class-conditional diffusers UNet2DModel folder (32 px, 5 classes);
- ``my-dit/``: a tiny DiT pipeline folder (transformer/ + vae/ + scheduler/, 32 px, 5 classes);
- ``my-photos/``: four small images; ``my-images/{train,test}/{goldfish,tiger-shark}/``: a 2-class folder;

and it points CLAREPS_HOME at a copy of the presets made toy-sized: CLARID 5 DDIM steps, 2 engine
iterations, k = 4 in the three presets the guide names; a 1-epoch, width-4 student; a fast evaluation on
a few images. Every ```python block runs, in order, in one namespace (the later blocks use the
``teacher`` of the earlier ones). Every ``clareps`` line of the ```bash blocks is parsed by the real
command line (options, types); the ``canonical`` and ``sample`` lines also run for real. The table of
CLARID settings per model kind is checked against the real (not the toy) presets.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("diffusers")

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guides" / "own-model.md"
TOY_CLARID = {"steps": 5, "max_iter": 2, "k": 4, "sampler_precision": "fp32"}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(), re.S)


def clareps_lines() -> list[list[str]]:
    lines = [line.strip() for block in blocks("bash") for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("clareps ")]


def _toy_home(home: Path) -> None:
    shutil.copytree(REPO / "configs", home / "configs")

    def edit(name: str, change) -> None:
        path = home / "configs" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data))

    for name in ("bank-default", "cifar10-diffusers-bank", "imagenet-dit-bank"):
        edit(name, lambda d: d["clarid"].update(TOY_CLARID))
    edit("distill-default", lambda d: d.update(epochs=1, batch_size=8, bank_batch_size=4, precision="fp32",
                                               student=dict(d["student"], width=4),
                                               loss=dict(d["loss"], proj_hidden=8)))

    def fast(d):
        f = d["fast"]
        f["clean"]["n_images"] = 8
        f["robustness"].update(attacks=["pgd"], n_images=4, slow_n_images=2)
        f["corruptions"].update(types=["contrast"], severities=[1], n_images=4)
        f["saliency"].update(n_images=2)
    edit("evaluate-default", fast)


def _images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")


@pytest.fixture
def world(tmp_path, monkeypatch):
    from tiny_diffusers import write_dit, write_unet2d

    write_unet2d(tmp_path / "my-unet", size=32)
    write_dit(tmp_path / "my-dit", size=32)
    _images(tmp_path / "my-photos", 4, 0)
    for s, (split, n) in enumerate((("train", 12), ("test", 6))):
        for c, name in enumerate(("goldfish", "tiger-shark")):
            _images(tmp_path / "my-images" / split / name, n, 10 * s + c)
    _toy_home(tmp_path / "home")
    monkeypatch.setenv("CLAREPS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    return tmp_path


def test_python_blocks_run_as_written(world, capsys):
    import torch

    scope: dict = {}
    for i, code in enumerate(blocks("python")):
        exec(compile(code, f"{GUIDE.name} python block {i + 1}", "exec"), scope)
    assert (world / "runs/unet-class3.png").is_file() and (world / "runs/dit-class3-control.png").is_file()
    canon, matched = scope["canon"], scope["matched"]
    assert canon.labels.tolist() == [3] * 10 and canon.images.shape == (10, 3, 32, 32)
    assert canon.settings["tol"] == 1e-3 and canon.meta["teacher_kind"] == "dit"  # the DiT preset (toy-sized)
    assert len(matched) == 4 and matched.meta["source"] == "images"
    assert scope["samples"].shape == (10, 3, 32, 32) and scope["canon_k8"].singular_values.shape == (10, 8)
    assert len(scope["bank"]) == 100 and scope["bank"].meta["config"]["clarid"]["tol"] == 1e-3
    ev = scope["ev"]
    assert 0 <= ev.clean_accuracy <= 1 and ev.robust_accuracy and "| clean/test |" in ev.to_markdown()
    assert torch.equal(scope["bank"].labels.unique(), torch.tensor([0, 1]))
    assert "clean accuracy" in capsys.readouterr().out


def test_clareps_lines_parse_and_the_cheap_ones_run(world, run_cli):
    import typer

    from clareps.cli import _register, app

    lines = clareps_lines()
    assert {line[0] for line in lines} == {"canonical", "sample", "bank", "distill", "evaluate"}
    _register()
    group = typer.main.get_command(app)
    for args in lines:
        ctx, cmd, rest = group.make_context("clareps", list(args)), group, list(args)
        while hasattr(cmd, "resolve_command"):  # down to the verb (`bank build`), then parse its options
            name, cmd, rest = cmd.resolve_command(ctx, rest)
            ctx = cmd.make_context(name, rest, parent=ctx)
        if args[0] in ("canonical", "sample"):
            code, out, err = run_cli(*args)
            assert code == 0, f"clareps {shlex.join(args)}: {err}"
    for out in ("unet-class3", "dit-class3", "dit-class3-photos", "dit-class3-k8"):
        assert (world / "runs" / out / "canonical.png").is_file()
    assert (world / "runs/dit-samples/samples_w3_seed0.png").is_file()


def test_the_settings_table_is_the_presets():
    from clareps.clarid.presets import TEACHER_PRESETS, clarid_preset

    rows = re.findall(r"^\| [^|]+ \| `([\w-]+)` \| (.+) \|$", GUIDE.read_text(), re.M)
    assert [name for name, _ in rows] == list(TEACHER_PRESETS.values())
    for (name, cells), kind in zip(rows, TEACHER_PRESETS):
        c = clarid_preset(kind)
        want = [c.t_e, f"`{c.tap}`", c.k, c.w, c.steps, c.tol, c.max_iter]
        got = [cell.strip() for cell in cells.split("|")]
        assert got[1] == want[1] and [float(x) for x in got[:1] + got[2:]] == [float(x) for x in want[:1] + want[2:]]


def test_the_install_line_is_an_extra_and_the_guide_speaks_of_the_product():
    text = GUIDE.read_text()
    assert "pip install -e '.[diffusers]'" in text
    assert re.search(r'^diffusers = \["diffusers==', (REPO / "pyproject.toml").read_text(), re.M)
    assert not re.search(r"\b(session|issue \d+|workplace|lent)\b", text, re.I)
