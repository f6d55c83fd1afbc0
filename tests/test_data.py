"""The default benchmark, the generic composer, ImageSet and the grid helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from clareps.data import benchmark as bm
from clareps.data.backgrounds import BgJitter, crop_backgrounds
from clareps.data.benchmark import SPLITS, BenchmarkConfig, build_benchmark, fingerprint, load_split
from clareps.data.cli import register as register_data
from clareps.data.compose import compose, stream_rngs
from clareps.data.imageset import ImageSet
from clareps.errors import ClarepsError
from clareps.grids import save_grid

SMALL = dict(n_train=200, n_test=50)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = BenchmarkConfig(**SMALL)
    folder = build_benchmark(cfg, tmp_path_factory.mktemp("cache"), progress=False)
    return cfg, folder, {s: bm.read_split_arrays(folder, s)[0] for s in SPLITS}


def test_same_config_same_bytes_and_rho_changes_both(built, tmp_path):
    cfg, folder, arrays = built
    again = build_benchmark(BenchmarkConfig(**SMALL), tmp_path / "a", progress=False)
    assert again.name == folder.name == f"animals-{fingerprint(cfg)}"
    meta1, meta2 = bm.read_json(folder / "meta.json"), bm.read_json(again / "meta.json")
    assert meta1["splits"] == meta2["splits"]
    for split in SPLITS:
        other = bm.read_split_arrays(again, split)[0]
        assert all(np.array_equal(arrays[split][k], other[k]) for k in bm.KEYS)

    rho_cfg = BenchmarkConfig(**SMALL, rho=0.9)
    assert fingerprint(rho_cfg) != fingerprint(cfg)
    changed = build_benchmark(rho_cfg, tmp_path / "b", progress=False)
    train = bm.read_split_arrays(changed, "train")[0]
    assert not np.array_equal(train["images"], arrays["train"]["images"])
    # the foregrounds do not depend on rho
    only_fg = bm.read_split_arrays(changed, "test-only-fg")[0]
    assert np.array_equal(only_fg["images"], arrays["test-only-fg"]["images"])


def test_shapes_dtypes_and_balance(built):
    _, folder, arrays = built
    for split, a in arrays.items():
        n = 200 if split.startswith("train") else 50
        assert a["images"].shape == (n, 32, 32, 3) and a["images"].dtype == np.uint8
        assert a["masks"].shape == (n, 32, 32) and a["masks"].dtype == np.uint8
        assert set(np.unique(a["masks"])) == {0, 1}
        for key in ("labels", "bg_source", "fg_index"):
            assert a[key].shape == (n,) and a[key].dtype == np.int64
        assert np.bincount(a["labels"], minlength=10).tolist() == [n // 10] * 10
    ds = load_split(folder, "test-original")
    assert ds.images.shape == (50, 3, 32, 32) and ds.images.dtype == torch.float32
    assert ds.masks.shape == (50, 1, 32, 32) and ds.num_classes == 10
    assert ds.class_names[0] == "bear" and ds.class_names[9] == "zebra"
    assert torch.equal(ds.images[0].permute(1, 2, 0), torch.from_numpy(arrays["test-original"]["images"][0]) / 255)


def test_foregrounds_disjoint_and_shared(built):
    _, _, a = built
    train, test = set(a["train"]["fg_index"]), set(a["test-original"]["fg_index"])
    assert len(train) == 200 and len(test) == 50 and not train & test
    assert np.array_equal(a["train"]["fg_index"], a["train-rand"]["fg_index"])
    assert np.array_equal(a["train"]["masks"], a["train-rand"]["masks"])
    for split in SPLITS[3:]:
        assert np.array_equal(a[split]["fg_index"], a["test-original"]["fg_index"])
        assert np.array_equal(a[split]["masks"], a["test-original"]["masks"])
    gray, labels = bm.load_animal_mnist()
    assert np.array_equal(labels[a["train"]["fg_index"]], a["train"]["labels"])
    # the mask is the silhouette: same pixel count as the source silhouette (size 32 keeps 28x28)
    i = a["test-original"]["fg_index"][0]
    assert a["test-original"]["masks"][0].sum() == (gray[i] > 127).sum()


def test_train_correlation_follows_rho(built, tmp_path):
    _, _, a = built
    match = (a["train"]["bg_source"] == a["train"]["labels"]).mean()
    assert 0.4 <= match <= 0.6  # rho = 0.5 on 200 images
    rand = a["train-rand"]
    assert (rand["bg_source"] == rand["labels"]).mean() < 0.2
    assert len(np.unique(rand["bg_source"])) == 10
    assert (a["test-mixed-same"]["bg_source"] == a["test-mixed-same"]["labels"]).all()
    assert (a["test-only-fg"]["bg_source"] == -1).all()
    for rho, want in ((1.0, 1.0), (0.0, 0.0)):
        folder = build_benchmark(BenchmarkConfig(n_train=100, n_test=10, rho=rho), tmp_path, progress=False)
        t = bm.read_split_arrays(folder, "train")[0]
        assert (t["bg_source"] == t["labels"]).mean() == want


def test_test_variants_relate_to_original(built):
    _, _, a = built
    orig, fg, bg, same = (a[s] for s in ("test-original", "test-only-fg", "test-only-bg", "test-mixed-same"))
    inside = orig["masks"].astype(bool)
    assert (fg["images"][~inside] == 0).all()
    assert np.array_equal(fg["images"][inside], orig["images"][inside])
    assert np.array_equal(bg["images"][~inside], orig["images"][~inside])
    assert np.array_equal(bg["bg_source"], orig["bg_source"])
    assert not np.array_equal(bg["images"][inside], orig["images"][inside])  # the animal is gone
    # mixed-same takes fresh crops, even where test-original used the same source
    keep = orig["bg_source"] == same["bg_source"]
    assert keep.any() and not np.array_equal(same["images"][keep], orig["images"][keep])


def test_backgrounds_vary_within_a_source(built):
    _, _, a = built
    t = a["test-only-bg"]
    for s in range(10):
        crops = t["images"][t["bg_source"] == s].reshape(-1, 32 * 32 * 3).astype(float)
        if len(crops) >= 2:
            assert np.abs(crops[0] - crops[1]).mean() > 5


def test_crops_vary_in_position_and_scale():
    # a source whose red channel encodes x and green encodes y, so each crop shows where it came from
    yy, xx = np.mgrid[0:256, 0:256]
    source = np.stack([xx, yy, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    rngs = stream_rngs(0, "t", 200)
    jitter = BgJitter(scale_min=0.15, scale_max=0.6, flip=False, hue=0, brightness=0, contrast=0)
    crops = crop_backgrounds([source], np.zeros(200, np.int64), rngs, 16, jitter) * 255
    centre_x, centre_y = crops[..., 0].mean(axis=(1, 2)), crops[..., 1].mean(axis=(1, 2))
    span = crops[..., 0].max(axis=(1, 2)) - crops[..., 0].min(axis=(1, 2))
    assert centre_x.min() < 60 and centre_x.max() > 196 and centre_y.min() < 60 and centre_y.max() > 196
    assert span.min() < 0.2 * 256 and span.max() > 0.5 * 256  # crop sides from 15 % to 60 % of the source
    assert abs(np.corrcoef(span, centre_x)[0, 1]) < 0.3


def test_reuse_refuse_corrupt_and_source_change(built, tmp_path, monkeypatch):
    cfg, folder, arrays = built
    monkeypatch.setattr(bm, "_build_arrays", lambda *a, **k: pytest.fail("rebuilt a complete build"))
    assert build_benchmark(cfg, folder.parent, progress=False) == folder
    copy = tmp_path / folder.name
    copy.mkdir()
    (copy / "meta.json").write_bytes((folder / "meta.json").read_bytes())
    tampered = dict(arrays["train"], labels=np.roll(arrays["train"]["labels"], 1))
    np.savez(copy / "train.npz", **tampered)
    with pytest.raises(ClarepsError, match="do not match"):
        load_split(copy, "train")
    with pytest.raises(ClarepsError, match="unknown split"):
        load_split(folder, "val")
    real = bm.load_source

    def changed(name):
        img = real(name).copy()
        if name == "brick":
            img[0, 0, 0] ^= 1
        return img

    monkeypatch.setattr(bm, "load_source", changed)
    assert fingerprint(cfg) != folder.name.removeprefix("animals-")


def test_config_errors():
    for bad in (dict(n_train=95), dict(rho=1.5), dict(n_train=9000, n_test=1010), dict(sources=["grass"] * 10)):
        with pytest.raises(ValueError):
            BenchmarkConfig(**bad)
    with pytest.raises(ValueError):
        BenchmarkConfig(bogus=1)


def test_compose_generic_foregrounds_on_flat_sources():
    n, size = 40, 16
    fg = np.zeros((n, size, size), np.uint8)
    masks = np.zeros((n, size, size), bool)
    masks[:, 4:12, 4:12] = True
    fg[masks] = 200
    labels = np.arange(n) % 2
    sources = [np.full((64, 64, 3), (255, 0, 0), np.uint8), np.full((64, 64, 3), (0, 0, 255), np.uint8)]
    flat = BgJitter(hue=0, brightness=0, contrast=0)
    out = compose(fg, masks, labels, sources, rho=1.0, seed=3, jitter=flat)
    assert (out["bg_source"] == labels).all()
    img = out["images"]
    assert (img[:, 5, 5] == 200).all()
    assert (img[labels == 0, 0, 0] == (255, 0, 0)).all() and (img[labels == 1, 0, 0] == (0, 0, 255)).all()
    swapped = compose(fg, masks, labels, sources, rho=0.0, seed=3, jitter=flat)
    assert (swapped["bg_source"] == 1 - labels).all()
    with pytest.raises(ClarepsError):
        compose(fg, masks, labels + 5, sources, rho=1.0, seed=3)


def test_imageset_validation_and_subsets():
    x = torch.rand(30, 3, 8, 8)
    y = torch.arange(30) % 3
    ds = ImageSet(x, y, num_classes=3)
    assert len(ds) == 30 and ds.class_names == ["0", "1", "2"]
    pc = ds.per_class(4, seed=1)
    assert pc.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(pc.images, ds.per_class(4, seed=1).images)
    assert not torch.equal(pc.images, ds.per_class(4, seed=2).images)
    assert torch.equal(ds.subset([2, 0]).images, x[[2, 0]])
    assert len(ds.subset(y == 1)) == 10
    with pytest.raises(ClarepsError, match="fewer"):
        ds.per_class(11)
    bad = [
        dict(images=x.double(), labels=y, num_classes=3),
        dict(images=x[:, 0], labels=y, num_classes=3),
        dict(images=x * 2, labels=y, num_classes=3),
        dict(images=x, labels=y.int(), num_classes=3),
        dict(images=x, labels=y, num_classes=2),
        dict(images=x, labels=y, masks=torch.ones(30, 1, 4, 4), num_classes=3),
        dict(images=x, labels=y, masks=torch.full((30, 1, 8, 8), 0.5), num_classes=3),
        dict(images=x, labels=y, bg_source=torch.zeros(29, dtype=torch.int64), num_classes=3),
        dict(images=x, labels=y, num_classes=3, class_names=["a"]),
    ]
    for kwargs in bad:
        with pytest.raises(ClarepsError):
            ImageSet(**kwargs)


def test_save_grid_layout_and_labels(tmp_path):
    imgs = torch.zeros(5, 3, 4, 4)
    imgs[0, 0] = 1.0  # first image red
    path = save_grid(imgs, tmp_path / "g.png", nrow=3, pad=1, scale=2)
    im = np.asarray(Image.open(path).convert("RGB"))
    assert im.shape == ((2 * 5 + 1) * 2, (3 * 5 + 1) * 2, 3)
    assert tuple(im[2, 2]) == (255, 0, 0) and tuple(im[0, 0]) == (255, 255, 255)
    assert tuple(im[2, 12]) == (0, 0, 0)  # second image, black
    labelled = save_grid(imgs.numpy()[:, :1], tmp_path / "l.png", nrow=3, pad=1, scale=2, row_labels=["a", "b"])
    assert Image.open(labelled).width > im.shape[1]
    for bad in (torch.zeros(2, 2, 4, 4), torch.zeros(3, 4, 4)):
        with pytest.raises(ClarepsError):
            save_grid(bad, tmp_path / "x.png")
    with pytest.raises(ClarepsError, match="row labels"):
        save_grid(imgs, tmp_path / "x.png", nrow=3, row_labels=["a"])


def test_cli_build_and_show(built, tmp_path):
    cfg, folder, _ = built
    runner = CliRunner()
    data_app = typer.Typer()
    register_data(data_app)
    args = ["--set", "n_train=200", "--set", "n_test=50", "--cache-dir", str(folder.parent), "--quiet"]
    res = runner.invoke(data_app, ["build", *args])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(folder)
    res = runner.invoke(data_app, ["show", *args, "--out", str(tmp_path), "--per-class", "3"])
    assert res.exit_code == 0, res.output
    assert res.output.split() == [str(tmp_path / f"{s}.png") for s in SPLITS]
    grid = Image.open(tmp_path / "train.png")
    assert grid.height == (10 * 34 + 2) * 2  # a row per class
    res = runner.invoke(data_app, ["build", "--set", "rho=3", "--cache-dir", str(tmp_path)])
    assert isinstance(res.exception, ClarepsError) and "rho" in str(res.exception)
