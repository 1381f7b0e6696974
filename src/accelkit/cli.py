"""The ``accelkit`` command line: a thin typer shell over the library.

Each command calls one library function with the same name. Bad input raises an
AccelkitError; ``main`` prints its one line and exits 2, with no traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from accelkit.errors import AccelkitError

app = typer.Typer(
    add_completion=False,
    # click's plain help wraps long words (package.module:function, option names) at 80
    # columns; rich's boxed help cut them to an ellipsis
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Make PyTorch models faster with classic techniques; every speed-up measured beside its baseline.",
)

# Each area adds its commands from its own module (``register(app)``), so the
# areas grow without editing each other. A module that has not landed yet is absent.
_COMMAND_MODULES = (
    "accelkit.commands.core",
    "accelkit.commands.inference",
    "accelkit.commands.train",
    "accelkit.commands.data",
    "accelkit.commands.compress",
    "accelkit.commands.early_exit",
    "accelkit.commands.optimize",
    "accelkit.commands.batch",
)

for _name in _COMMAND_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning AccelkitError into one line and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
        # without standalone mode click returns typer.Exit's code instead of exiting with it:
        # a failed torchrun or a signal (128 + N) must still reach the shell
        if isinstance(code, int) and code:
            sys.exit(code)
    except AccelkitError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors (a misspelt option) arrive here with standalone_mode=False
        if isinstance(exc, _usage_errors()) and hasattr(exc, "show"):
            exc.show()
            sys.exit(2)
        raise


def _usage_errors() -> tuple[type[BaseException], ...]:
    """click's exception class, and typer's own where typer carries its own copy of click (>= 0.26)."""
    kinds: list[type[BaseException]] = []
    if isinstance(getattr(typer, "TyperException", None), type):
        kinds.append(typer.TyperException)
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kinds)
