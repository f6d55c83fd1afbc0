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
    except Exception as exc:  # click usage errors
        import click
        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
