"""The ``clareps`` command line: one Typer app, one verb per stage."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from clareps.errors import ClarepsError, interrupt_message

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Canonical latent representations of class-conditional diffusion models.")


@app.callback()
def _root(threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: $OMP_NUM_THREADS, else every core); "
        "give each of two jobs on one machine half the cores")) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _group(parent: typer.Typer, name: str, help: str) -> typer.Typer:
    """A group of verbs, ``clareps [...] NAME VERB``; bare, it prints its help."""
    group = typer.Typer(no_args_is_help=True)
    parent.add_typer(group, name=name, help=help)
    return group


def _register() -> None:
    """Every verb, one style: each ``*/cli.py`` module has a ``register`` that puts its verbs on the app or
    the groups it is given; the groups are made here, in the order ``--help`` lists them."""
    from clareps.api import cli as canonical
    from clareps.bank import cli as bank_verbs
    from clareps.classifiers import cli as judges
    from clareps.data import cli as data_verbs
    from clareps.demo import cli as demo
    from clareps.demo import study_cli as study_runner
    from clareps.diffusion import cli as teacher
    from clareps.distill import cli as distill
    from clareps.evaluate import student_cli as student_eval
    from clareps.evaluate import teacher_cli as teacher_check
    from clareps.report import cli as report
    from clareps.studies import cli as studies
    from clareps.studies import table_cli as study_tables

    data = _group(app, "data", "Build and look at the default benchmark.")
    bank = _group(app, "bank", "Canonical banks: build, show, sweep, compare.")
    study = _group(app, "study", "Studies: run one archived student at a time, and their tables.")
    data_verbs.register(data)
    bank_verbs.register(bank)
    teacher.register(app)
    canonical.register(app)
    judges.register(app)
    teacher_check.register(app)
    student_eval.register(app)
    distill.register(app)
    report.register(app)
    study_runner.register(study)
    studies.register(app, bank)
    study_tables.register(_group(study, "table", "A study's tables, printed as Markdown."),
                          _group(study, "selectivity", "The selectivity study's steps."))
    demo.register(app)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2; CTRL-C exits 130 with one
    line saying what was kept."""
    # Idle OpenMP threads sleep instead of spinning: alone as fast, and two jobs on one small machine no
    # longer slow each other 3x (benchmarks/threads.py). Set before torch loads; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        _register()
        code = app(standalone_mode=False)  # typer turns CTRL-C into a returned 130
    except ClarepsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        code = 130
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (unknown option, missing argument, bad value)
        if isinstance(exc, _click_exception()):
            sys.exit(_usage_error(exc))
        if not isinstance(exc, typer.Abort):  # click's Abort on older typer, the vendored one on newer
            raise
        if not isinstance(exc.__cause__, KeyboardInterrupt):  # older typer: CTRL-C arrives as an Abort
            sys.exit(1)
        code = 130
    if code == 130:
        print(interrupt_message(), file=sys.stderr)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _usage_error(exc) -> int:
    """A bad option value, an unknown option, a missing argument: one ``error:`` line naming the verb, exit 2,
    like every other refusal (the bare verb's help, which Click raises as an error too, is shown as help)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.show()
        return exc.exit_code
    ctx = getattr(exc, "ctx", None)
    verb = ctx.command_path.removeprefix(ctx.find_root().command_path).strip() if ctx is not None else ""
    message = " ".join(exc.format_message().split())
    print(f"error: {verb + ': ' if verb else ''}{message} (see --help)", file=sys.stderr)
    return 2


def _click_exception() -> type:
    """Click's usage-error base: typer >= 0.2x raises its vendored copy's, older typer click's own."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException
