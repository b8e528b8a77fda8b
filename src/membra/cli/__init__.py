"""The ``membra`` command: thin verbs over the public API.

Each verb lives in its own module under :mod:`membra.cli` and registers itself on :data:`app`.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup

from .. import __version__

#: ``--debug`` (or ``MEMBRA_DEBUG=1``) lets an error's traceback through.
_DEBUG = {"on": os.environ.get("MEMBRA_DEBUG", "") not in ("", "0")}


class _OneLineErrors(TyperGroup):
    """Every verb's error reaches the user as one ``error: ...`` line and exit status 2.

    typer's/click's own exceptions (usage errors, ``Exit``, ``Abort``) pass through unchanged;
    ``--debug`` lets the traceback through for a bug report."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as err:  # noqa: BLE001 -- the one boundary where errors become text
            if _DEBUG["on"] or type(err).__module__.split(".")[0] in ("typer", "click"):
                raise
            known = isinstance(err, (ValueError, TypeError, OSError, KeyError, MemoryError))
            text = str(err) if known else f"{type(err).__name__}: {err}"
            typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
            if not known:
                typer.secho("(run with --debug for the traceback)", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_OneLineErrors,
    name="membra",
    help="Spiking neural networks built around the membrane potential.\n\n"
         "Examples:\n\n  membra train configs/digits_imp_lts.toml\n\n"
         "  membra eval runs/digits_imp_lts\n\n  membra models\n\n  membra info",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"membra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          debug: bool = typer.Option(False, "--debug",
                                     help="Show the full traceback of an error.")) -> None:
    """membra command line."""
    if debug:
        _DEBUG["on"] = True


def _register_verbs() -> None:
    """Import every verb module of this package; each registers its commands on :data:`app`.
    Verb modules import heavy dependencies inside their commands, so this stays fast."""
    import importlib
    import pkgutil

    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if not mod.startswith("_"):
            importlib.import_module(f"{__name__}.{mod}")


_register_verbs()


def main() -> None:
    from ..kernels.memory import reuse_enabled_by_env, reuse_freed_memory

    # Large tensors reuse freed heap pages instead of fresh mmaps (page faults on first touch
    # cost more than the kernels on many machines); MEMBRA_MALLOC_CACHE=0 turns it off.
    if reuse_enabled_by_env():
        reuse_freed_memory()
    app()
