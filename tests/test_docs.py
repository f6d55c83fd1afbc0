"""The documentation is tested: README.md and every page under docs/.

What is checked, and the conventions a page follows so that it can be:

1. Every fenced ```python block runs, as written, at toy size. "Toy size" is not a rewrite of the block:
   it runs in an empty working folder with ``CLAREPS_HOME`` pointing at a tiny home (a tiny shipped
   teacher, and presets cut to toy settings, as ``tests/test_api.py`` builds it), so
   ``clareps.Teacher.load()`` and every preset a block reads are small. A block may name
   ``my-diffusers-folder``: it exists there, a tiny random class-conditional diffusers ``UNet2DModel``
   (10 classes + the null class). Every ``"*.png"`` string a block names must exist afterwards. A
   block needs no other substitution; if one ever does, add it to ``SUBSTITUTIONS`` (literal text ->
   toy text) and say why there.
2. Every ``clareps ...`` command (in code blocks, and inline code that starts with ``clareps ``; also
   after ``torchrun ... -m`` and ``python -m``) is parsed against the real command tree that Typer
   builds: the verb (and sub-verb) exists, every option exists on it, and the ``--set`` (and
   ``distill-sweep --grid``) keys load through the verb's own config loader, with the command's
   ``--config`` preset, so unknown keys and bad values fail here as they would for a user. An
   upper-case word where a verb goes (``clareps VERB --help``) is a placeholder.
3. Every repository path named (``configs/x.yaml``, ``src/clareps/...``, ``tests/x.py::test_y``, ...)
   exists, and every module or attribute named ``clareps.x.y`` resolves.

Pages with their own end-to-end tests are left out here: docs/guides/own-model.md and
docs/guides/cifar10.md (each has its own test), and the Python block of docs/guide/python.md, which
``tests/test_api.py`` runs (checked below to still be so).
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OWN_TESTS = {"docs/guides/own-model.md", "docs/guides/cifar10.md"}  # tested end to end by their own tests
RUN_ELSEWHERE = {"docs/guide/python.md": "tests/test_api.py"}  # python blocks another test runs
SUBSTITUTIONS: dict[str, str] = {}  # literal text in a block -> what the tests run instead (none needed so far)
TOP_FILES = ("README.md", "CHANGELOG.md", "LICENSE", "CITATION.cff", "Makefile", "pyproject.toml", "mkdocs.yml")


def doc_files() -> list[str]:
    pages = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md"))
    return ["README.md", *(p for p in pages if p not in OWN_TESTS)]


def python_blocks() -> list[tuple[str, int, str]]:
    out = []
    for name in doc_files():
        blocks = re.findall(r"^```python\n(.*?)^```", (REPO / name).read_text(), re.S | re.M)
        out += [(name, i, code) for i, code in enumerate(blocks, 1) if name not in RUN_ELSEWHERE]
    return out


# ---------------------------------------------------------------------------------------------- 1. code

@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory, tiny_teacher, tiny_data_cache):
    from test_api import _tiny_home

    root = tmp_path_factory.mktemp("docs-home")
    _tiny_home(root / "home", tiny_teacher, tiny_data_cache)
    return root / "home"


def _tiny_diffusers_folder(path: Path) -> None:
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (the dev extra)")
    import torch

    torch.manual_seed(0)
    diffusers.UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=11, attention_head_dim=8).save_pretrained(path)
    diffusers.DDIMScheduler().save_pretrained(path)


@pytest.mark.parametrize("name, index, code", python_blocks(), ids=lambda v: v if isinstance(v, str) and
                         len(v) < 40 else None)
def test_python_block_runs_at_toy_size(name, index, code, tiny_world, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAREPS_HOME", str(tiny_world))
    monkeypatch.chdir(tmp_path)
    if "my-diffusers-folder" in code:
        _tiny_diffusers_folder(tmp_path / "my-diffusers-folder")
    for literal, toy in SUBSTITUTIONS.items():
        code = code.replace(literal, toy)
    exec(compile(code, f"{name} (python block {index})", "exec"), {"__name__": f"docs_block_{index}"})
    for png in re.findall(r"[\"']([^\"']+\.png)[\"']", code):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} block {index}: {png} not written"


def test_blocks_run_elsewhere_are_still_run_there():
    for page, test in RUN_ELSEWHERE.items():
        assert "```python" in (REPO / page).read_text() and page in (REPO / test).read_text(), (page, test)
    assert python_blocks(), "no python block found: the extraction is broken"


# ----------------------------------------------------------------------------------------------- 2. CLI

def _command_tree():
    import typer

    from clareps import cli

    if not getattr(cli, "_docs_registered", False):
        cli._register()
        cli._docs_registered = True
    return typer.main.get_command(cli.app)


def cli_commands() -> list[tuple[str, str]]:
    """(file, command line after `clareps`) for every clareps command the docs show."""
    found = []
    for name in doc_files():
        text = (REPO / name).read_text()
        code = re.findall(r"^```(?!python)[^\n]*\n(.*?)^```", text, re.S | re.M)
        code += re.findall(r"((?:^(?: {4}|\t).*\n|^\s*\n)+)", text, re.M)  # indented code blocks
        lines = []
        for block in code:
            lines += re.sub(r"\\\n\s*", " ", block).splitlines()
        lines += [" ".join(s.split()) for s in re.findall(r"`(clareps [^`]+)`", text)]
        for line in lines:
            for part in re.split(r"&&|;|\|\|?", line):
                args = _clareps_args(part)
                if args is not None:
                    found.append((name, args))
    return sorted(set(found))


def _clareps_args(part: str) -> str | None:
    try:
        tokens = shlex.split(part, comments=True)
    except ValueError:
        tokens = part.split()
    for i, tok in enumerate(tokens):
        if tok == "clareps" and (i == 0 or tokens[i - 1] == "-m" or all("=" in t or t in ("nice", "-n", "19", "setsid",
                                                                                        "nohup") for t in tokens[:i])):
            return shlex.join(tokens[i + 1:])
    return None


def _loader(path: tuple[str, ...], config: str | None, mode: str, section: str):
    from clareps.config import load_config
    from clareps.paths import resolve_preset

    def plain(module: str, cls: str, default: str):
        def load(sets):
            model = getattr(importlib.import_module(module), cls)
            return load_config(model, resolve_preset(config, default), sets)
        return load

    def evaluate(sets):
        from clareps.evaluate.suite import load_eval_config
        return load_eval_config(resolve_preset(config, "evaluate-default"), mode, sets)

    def demo(sets):
        from clareps.demo.spec import load_demo_config
        return load_demo_config(resolve_preset(config, "demo-default"), section, sets)

    bank = plain("clareps.bank.build", "BankConfig", "bank-default")
    distill = plain("clareps.distill.config", "DistillConfig", "distill-default")
    data = plain("clareps.data.benchmark", "BenchmarkConfig", "data-default")
    return {("train-teacher",): plain("clareps.diffusion.train", "TeacherConfig", "teacher-default"),
            ("train-judge",): plain("clareps.classifiers.shape_judge", "JudgeConfig", "judge-default"),
            ("train-mask-judge",): plain("clareps.classifiers.mask_judge", "MaskJudgeConfig", "mask-judge-default"),
            ("bank", "build"): bank, ("bank", "sweep"): bank, ("data", "build"): data, ("data", "show"): data,
            ("distill",): distill, ("train-kd-teacher",): distill, ("distill-sweep",): distill,
            ("evaluate",): evaluate, ("demo",): demo, ("study", "run"): demo, ("study", "status"): demo,
            ("study", "assemble"): demo}.get(path)


def check_command(args: str) -> None:
    """Raise AssertionError naming what in `clareps ARGS` the real CLI does not have."""
    tokens, optional = [], False  # `[--fast]`, `[--set rho=0.9]`: an optional part, shown in brackets
    for tok in shlex.split(args):
        if tok.startswith("[-"):
            tok, optional = tok[1:], True
        if optional and tok.endswith("]"):
            tok, optional = tok[:-1], False
        if tok and tok != "...":
            tokens.append(tok)
    cmd, path, i = _command_tree(), (), 0
    while getattr(cmd, "commands", None):  # the root and groups: their options, then a verb
        opts = _options(cmd)
        while i < len(tokens) and tokens[i].startswith("-"):
            name = tokens[i].split("=", 1)[0]
            assert name in opts, f"`clareps {' '.join(path)}` has no option {name}"
            i += 2 if opts[name] and "=" not in tokens[i] else 1
        if i == len(tokens) or tokens[i].isupper():  # `clareps VERB ...`: a placeholder
            return
        assert tokens[i] in cmd.commands, f"no verb `{' '.join((*path, tokens[i]))}`: one of {sorted(cmd.commands)}"
        cmd, path, i = cmd.commands[tokens[i]], (*path, tokens[i]), i + 1
    opts, sets, given = _options(cmd), [], {}
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("-") and len(tok) > 1 and not re.match(r"-\d", tok):
            name, eq, inline = tok.partition("=")
            assert name in opts, f"`clareps {' '.join(path)}` has no option {name}"
            value = inline if eq else (tokens[i + 1] if opts[name] and i + 1 < len(tokens) else None)
            i += 2 if opts[name] and not eq else 1
            given[name] = value
            if name in ("--set", "-s") and value is not None:
                sets.append(value)
            if name == "--grid" and value is not None:  # distill-sweep: key=v1,v2 -> each key with its first value
                key, _, values = value.partition("=")
                sets.append(f"{key}={values.split(',')[0]}")
        else:
            i += 1
    if not sets:
        return
    config = given.get("--config", given.get("-c", "study-cadistill" if path[0] == "study" else None))
    mode = "fast" if "--fast" in given else given.get("--mode", "full")
    section = "full" if "--full" in given else given.get("--section", "study" if path[0] == "study" else "demo")
    load = _loader(path, config, mode, section)
    assert load is not None, f"`clareps {' '.join(path)}` takes --set but tests/test_docs.py has no loader for it"
    from clareps.errors import ClarepsError

    try:
        load(sets)
    except ClarepsError as err:
        raise AssertionError(f"`clareps {args}`: {err}") from None


def _options(cmd) -> dict[str, bool]:
    """Option name -> whether it takes a value."""
    out = {"--help": False}
    for p in cmd.params:
        if p.param_type_name == "option":
            for name in (*p.opts, *p.secondary_opts):
                out[name] = not (p.is_flag or p.count)
    return out


@pytest.mark.parametrize("name, args", cli_commands())
def test_cli_line_parses_against_the_real_command(name, args):
    check_command(args)


@pytest.mark.parametrize("args, match", [
    ("bank bild --out x", "no verb `bank bild`"),
    ("distill --methd ce", "has no option --methd"),
    ("bank build --set clarid.nope=1", "nope"),
    ("demo --set seeds=oops", "seeds"),
    ("evaluate --student s --fast --set robustness.n_images=-3", "n_images"),
])
def test_the_cli_check_catches_what_is_not_there(args, match):
    with pytest.raises(AssertionError, match=re.escape(match)):
        check_command(args)


def test_cli_lines_are_found():
    lines = {args.split()[0] for _, args in cli_commands() if args}
    assert {"demo", "bank", "distill", "evaluate"} <= lines, lines


# ------------------------------------------------------------------------------------ 3. paths, modules

PATH_RE = re.compile(r"(?<![\w/.~$-])((?:configs|src|docs|models|benchmarks|scripts|tests|\.ci)/[\w./{}*<>,+-]*"
                     r"(?:::\w+)?|(?:" + "|".join(map(re.escape, TOP_FILES)) + r")(?![\w/]))")
MODULE_RE = re.compile(r"(?<![\w./-])(clareps(?:\.[A-Za-z_]\w*)+)")


def named_paths() -> list[tuple[str, str]]:
    out = set()
    for name in doc_files():
        for m in PATH_RE.finditer((REPO / name).read_text()):
            out.add((name, m.group(1).rstrip(".,;:)'")))
    return sorted(out)


def named_modules() -> list[tuple[str, str]]:
    out = set()
    for name in doc_files():
        text = (REPO / name).read_text()
        out |= {(name, m.group(1).rstrip(".")) for m in MODULE_RE.finditer(text)}
    return sorted(out)


@pytest.mark.parametrize("name, path", named_paths())
def test_named_path_exists(name, path):
    path, _, test = path.partition("::")
    literal = re.split(r"[{}*<>]", path)[0]  # a pattern: its fixed part must exist
    target = REPO / literal if literal == path else (REPO / literal).parent if not literal.endswith("/") \
        else REPO / literal
    assert target.exists(), f"{name} names {path}, which is not in the repository"
    if test:
        assert re.search(rf"^\s*def {test}\(", target.read_text(), re.M), f"{name}: no {test} in {path}"


@pytest.mark.parametrize("name, dotted", named_modules())
def test_named_module_resolves(name, dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"{name} names {dotted}: no attribute {attr!r} there"
            obj = getattr(obj, attr)
        return
    raise AssertionError(f"{name} names {dotted}, which does not import")


def test_the_path_and_module_checks_find_names():
    assert ("README.md", "docs/performance.md") in named_paths()
    assert any(d == "clareps.api" for _, d in named_modules())
