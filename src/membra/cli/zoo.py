"""``membra models`` and ``membra datasets``: what the registries hold."""

from __future__ import annotations

import inspect

import typer

from . import app

_COMMON_MODEL = ("in_shape", "num_classes", "neuron", "neuron_kwargs")
_COMMON_DATA = ("split", "T", "root", "seed", "encoding")


def _options(builder, common) -> str:
    parts = []
    for p in inspect.signature(builder).parameters.values():
        if p.name in common:
            continue
        parts.append(p.name if p.default is inspect.Parameter.empty
                     else f"{p.name}={p.default!r}")
    return ", ".join(parts)


def _rows(rows: list[tuple[str, ...]]) -> None:
    """Print rows with every column but the last padded to its widest entry."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)] + [r[-1]]
        typer.echo("  ".join(cells).rstrip())


@app.command()
def models(options: bool = typer.Option(False, "--options", help="Also list each model's "
                                        "options (keyword arguments of create_model)."),
           pretrained: bool = typer.Option(False, "--pretrained", help="List the trained "
                                           "classifiers shipped with membra instead, with "
                                           "their test accuracy.")
           ) -> None:
    """List the model zoo (names for model.name in a run config), one line each.

    Every model maps [T, B, *in_shape] to per-step logits [T, B, K] and takes
    neuron="lif"|"if" and neuron_kwargs (e.g. init_potential="learnable").
    With --pretrained: the shipped trained models, loaded in Python with
    membra.models.pretrained(name).

    Examples:

      membra models --options

      membra models --pretrained
    """
    if pretrained:
        from ..models import pretrained_entries

        _rows([(e.name, e.dataset, f"test {100 * e.test_acc:.2f}% ({e.readout})",
                e.description) for e in pretrained_entries()])
        return
    from ..models import model_entries

    rows = []
    for e in model_entries():
        rows.append((e.name, e.description))
        if options:
            rows.append(("", f"options: {_options(e.builder, _COMMON_MODEL)}"))
    _rows(rows)


@app.command()
def datasets(options: bool = typer.Option(False, "--options", help="Also list each "
                                          "dataset's options.")) -> None:
    """List the datasets (names for data.name in a run config): built-in ones work offline
    at once; the others read your local files from root= (nothing is ever downloaded).

    Example: membra datasets
    """
    from ..data import dataset_entries

    rows = []
    for e in dataset_entries():
        rows.append((e.name, "built-in" if e.builtin else "root=...", e.description))
        if options:
            rows.append(("", "", f"options: {_options(e.builder, _COMMON_DATA)}"))
    _rows(rows)
