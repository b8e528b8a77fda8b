"""Pretrained classifiers shipped with membra: ``pretrained(name)`` gives the trained model.

Each model is a folder ``pretrained/<name>/`` beside this module holding
``model.safetensors`` (the weights; nothing is unpickled) and ``config.json``: the zoo model
(``model``: name, neuron, neuron_kwargs, options), ``in_shape``, ``num_classes``, the run
config it was trained with (``config``), its test accuracy (``test_acc`` with ``readout``),
the command that made it (``made_with``) and the SHA-256 of ``model.safetensors`` (checked on
load). Adding a model is dropping such a folder there (written by
:func:`membra.train.runs.save_pretrained`) and adding one line to :data:`PRETRAINED`.

Example::

    from membra.models import pretrained, pretrained_entry
    net = pretrained("digits-mlp")                  # eval mode, [T, B, 64] -> [T, B, 10]
    entry = pretrained_entry("digits-mlp")          # .test_acc, .readout, .config, .in_shape
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

__all__ = ["PRETRAINED", "PretrainedEntry", "pretrained", "pretrained_entry",
           "pretrained_entries"]

#: the folder holding one sub-folder per shipped model (package data, no Python in it)
ROOT = Path(__file__).parent / "pretrained"

#: name -> one-line description; each name is a folder in :data:`ROOT`
PRETRAINED = {
    "digits-mlp": "spiking MLP 64-128-128-10 on the 8x8 digits, learnable IMP, LTS loss "
                  "(configs/digits_imp_lts.toml)",
    "digits-dvs-cnn": "spiking CNN on event-camera digits [8, 2, 16, 16], learnable IMP, "
                      "LS-TET loss (configs/digits_dvs_ls_tet.toml)",
    "mnist-5k-cnn": "spiking CNN on real MNIST digits [2, 1, 28, 28], learnable IMP, LTS loss "
                    "(configs/mnist5k_imp_lts.toml)",
}


@dataclass(frozen=True)
class PretrainedEntry:
    """A shipped model: what it is, what it was trained with, and how well it does."""

    name: str
    description: str
    dataset: str
    in_shape: tuple[int, ...]
    num_classes: int
    test_acc: float         # on the dataset's test split, with ``readout``
    readout: str
    model: dict             # zoo name, neuron, neuron_kwargs, options
    config: dict            # the run config it was trained with
    made_with: str
    sha256: str
    folder: Path


def _folder(name: str) -> Path:
    if name not in PRETRAINED:
        close = difflib.get_close_matches(str(name), list(PRETRAINED), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"no pretrained model {name!r}{hint} Shipped: {sorted(PRETRAINED)} "
                         "(membra models --pretrained)")
    return ROOT / name


def pretrained_entry(name: str) -> PretrainedEntry:
    """The description, config and test accuracy of the shipped model ``name``."""
    folder = _folder(name)
    path = folder / "config.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return PretrainedEntry(
            name=name, description=PRETRAINED[name], dataset=d["config"]["data"]["name"],
            in_shape=tuple(d["in_shape"]), num_classes=int(d["num_classes"]),
            test_acc=float(d["test_acc"]), readout=str(d["readout"]), model=dict(d["model"]),
            config=d["config"], made_with=str(d["made_with"]), sha256=str(d["sha256"]),
            folder=folder)
    except FileNotFoundError:
        raise FileNotFoundError(f"pretrained model {name!r}: {str(path)!r} is missing (is the "
                                "package installed with its data files?)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"pretrained model {name!r}: {str(path)!r} is malformed "
                         f"({type(err).__name__}: {err})") from None


def pretrained_entries() -> list[PretrainedEntry]:
    """Every shipped model, in the order of :data:`PRETRAINED`."""
    return [pretrained_entry(n) for n in PRETRAINED]


def pretrained(name: str, *, device=None) -> nn.Module:
    """The shipped model ``name`` (see :data:`PRETRAINED`), in eval mode, built with
    :func:`membra.models.create_model` and loaded strictly from its safetensors file after
    checking the file's SHA-256. Its accuracy and config: :func:`pretrained_entry`."""
    from safetensors.torch import load

    from .registry import create_model

    e = pretrained_entry(name)
    raw = (e.folder / "model.safetensors").read_bytes()
    if hashlib.sha256(raw).hexdigest() != e.sha256:
        raise ValueError(f"pretrained model {name!r}: model.safetensors does not match the "
                         "SHA-256 in its config.json (damaged or edited file)")
    m = e.model
    model = create_model(m["name"], in_shape=e.in_shape, num_classes=e.num_classes,
                         neuron=m["neuron"], neuron_kwargs=m["neuron_kwargs"], **m["options"])
    state = load(raw)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"pretrained model {name!r}: its weights do not match the model "
                         f"{m['name']!r} ({err})") from None
    return model.to(device or "cpu").eval()
