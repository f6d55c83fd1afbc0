"""The ``clareps`` command line: one Typer app, one verb per stage."""

from __future__ import annotations

import sys
import typer

from clareps.errors import ClarepsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Canonical latent representations of class-conditional diffusion models.")



def _register() -> None:
    from clareps.clarid.cli import bank_app
    from clareps.data.cli import data_app
    from clareps.demo import demo
    from clareps.diffusion.cli import register as register_teacher
    from clareps.distill.cli import register as register_distill
    from clareps.evaluate.cli import register as register_evaluate
    from clareps.evaluate.eval_cli import register as register_eval_suite
    from clareps.report.cli import register as register_report

    app.add_typer(data_app, name="data", help="Build and look at the default benchmark.")
    app.add_typer(bank_app, name="bank", help="Canonical banks: build, show, sweep.")
    register_teacher(app)
    register_evaluate(app)
    register_eval_suite(app)
    register_distill(app)
    register_report(app)
    app.command("demo")(demo)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        _register()
        app(standalone_mode=False)
    except ClarepsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (unknown option, missing argument, bad value)
        usage, abort = _click_exceptions()
        if isinstance(exc, usage):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, abort):
            sys.exit(1)
        raise


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage-error and abort types; recent typer raises those of its own vendored copy."""
    import importlib

    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            pass
    usage = tuple(m.ClickException for m in mods if hasattr(m, "ClickException"))
    return usage, (typer.Abort, *(m.Abort for m in mods if hasattr(m, "Abort")))
