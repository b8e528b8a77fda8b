"""The ``membra`` command: thin verbs over the public API.

Each verb lives in its own module under :mod:`membra.cli` and registers itself on :data:`app`.
"""

from __future__ import annotations

import typer

from .. import __version__

app = typer.Typer(
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
                                       help="Print the version and exit.")) -> None:
    """membra command line."""


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
