"""The ``membra`` command: thin verbs over the public API.

Each verb lives in its own module under :mod:`membra.cli` and registers itself on :data:`app`.
Verb modules import torch (and everything that imports it) inside their commands only, so
``membra --help``, ``membra COMMAND --help`` and ``membra --version`` import no torch.

Help texts are written as docstrings: prose paragraphs (their line breaks are the source's,
not the terminal's, and are removed by :func:`tidy_help`) and an ``Example:`` or ``Examples:``
paragraph followed by one ``membra ...`` command per line, shown as written.
"""

from __future__ import annotations

import inspect
import os
import re

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
            known = isinstance(err, (ValueError, TypeError, OSError, KeyError, MemoryError)) \
                or _names_its_install(err)
            text = str(err) if known else f"{type(err).__name__}: {err}"
            typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
            if not known:
                typer.secho("(run with --debug for the traceback)", err=True)
            raise typer.Exit(2) from None


def _names_its_install(err: Exception) -> bool:
    """An ``ImportError`` that tells the user what to install (membra's missing-extra errors:
    ``... pip install 'membra[control]'``) is the user's fix, not a bug: no traceback hint."""
    return isinstance(err, ImportError) and "pip install" in str(err)


app = typer.Typer(
    cls=_OneLineErrors,
    name="membra",
    help="""Spiking neural networks built around the membrane potential.

    Examples:

    membra train configs/digits_imp_lts.toml --set train.epochs=3
    membra eval runs/digits_imp_lts
    membra models
    membra info
    """,
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


_EXAMPLE_HEAD = re.compile(r"(Examples?:)\s+(membra\b.*)", re.S)


def tidy_help(text: str) -> str:
    """The help text as typer's rich output should get it, so that the terminal wraps it at
    its own width and never inside an example:

    - a prose paragraph becomes one line (the docstring's line breaks are dropped);
    - a paragraph of ``membra ...`` lines keeps one command per line, as written;
    - ``Example: membra ...`` in one paragraph becomes the heading and the command on a line
      of its own (a command the docstring breaks over lines is joined again); consecutive
      paragraphs of commands become one."""
    out: list[str] = []
    for para in inspect.cleandoc(text or "").split("\n\n"):
        lines = [ln.strip() for ln in para.strip().splitlines()]
        head = _EXAMPLE_HEAD.fullmatch(" ".join(lines))
        if head:  # a line that does not start with "membra " continues the command above
            commands = re.split(r"\s+(?=membra )", head.group(2))
            out += [head.group(1), "\n".join(re.sub(r"\s+", " ", c) for c in commands)]
        elif lines and all(ln.startswith("membra ") for ln in lines):
            if out and out[-1].startswith("membra "):
                out[-1] += "\n" + "\n".join(lines)
            else:
                out.append("\n".join(lines))
        elif lines:
            out.append(" ".join(lines))
    return "\n\n".join(out)


def _tidy_app(app_: typer.Typer) -> None:
    """Apply :func:`tidy_help` to the help of every command and group of ``app_``."""
    if isinstance(app_.info.help, str):
        app_.info.help = tidy_help(app_.info.help)
    for cmd in app_.registered_commands:
        cmd.help = tidy_help(cmd.help if isinstance(cmd.help, str) else
                             inspect.getdoc(cmd.callback) or "")
    for group in app_.registered_groups:
        if isinstance(group.help, str):
            group.help = tidy_help(group.help)
        _tidy_app(group.typer_instance)


def _register_verbs() -> None:
    """Import every verb module of this package; each registers its commands on :data:`app`.
    Verb modules import heavy dependencies inside their commands, so this stays fast."""
    import importlib
    import pkgutil

    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if not mod.startswith("_"):
            importlib.import_module(f"{__name__}.{mod}")
    _tidy_app(app)


_register_verbs()


def _before_each_verb(command, hook) -> None:
    """Make every leaf command of a click command tree call ``hook()`` just before its own
    code runs: after its arguments are parsed, so ``--help``, ``--version`` and usage errors
    never reach it."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        for sub in subcommands.values():
            _before_each_verb(sub, hook)
        return
    run = command.invoke

    def invoke(ctx):
        hook()
        return run(ctx)

    command.invoke = invoke


def _reuse_freed_memory() -> None:
    """Large tensors reuse freed heap pages instead of fresh mmaps (page faults on first touch
    cost more than the kernels on many machines); ``MEMBRA_MALLOC_CACHE=0`` turns it off."""
    from ..kernels.memory import reuse_enabled_by_env, reuse_freed_memory

    if reuse_enabled_by_env():
        reuse_freed_memory()


def main() -> None:
    """The ``membra`` command (``python -m membra``)."""
    command = typer.main.get_command(app)
    _before_each_verb(command, _reuse_freed_memory)
    command()
