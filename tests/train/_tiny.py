"""Runs for tests: a tiny in-memory dataset and spiking model for engine tests (no membra.data
needed), a one-epoch run on the built-in digits, and rewriting a checkpoint's metadata."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from membra.nn import LIF, TimeDistributed
from membra.train import engine


@dataclass(frozen=True)
class Info:
    name: str
    in_shape: tuple
    num_classes: int
    T: int


class Blobs(torch.utils.data.Dataset):
    """Gaussian blobs in 8 dims, 3 classes, direct encoding ``x [T, 8]``."""

    def __init__(self, split: str, T: int = 3, n: int = 96, seed: int = 0):
        g = torch.Generator().manual_seed(1234)
        centres = torch.rand(3, 8, generator=g) * 2
        g = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = centres[self.y] + 0.3 * torch.randn(n, 8, generator=g)
        self.T = T
        self.info = Info("blobs", (8,), 3, T)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i].expand(self.T, 8).clone(), int(self.y[i])


def tiny_datasets(cfg):
    return (Blobs("train", cfg.data.T, n=cfg.data.options.get("n", 96), seed=cfg.run.seed),
            Blobs("test", cfg.data.T, n=48, seed=cfg.run.seed))


def tiny_model(cfg=None, info=None, bn: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    layers = [nn.Linear(8, 16)]
    if bn:
        layers.append(TimeDistributed(nn.BatchNorm1d(16)))
    layers += [LIF(shape=(16,), init_potential="learnable"), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def patch(monkeypatch=None):
    """Route the engine's dataset/model builders to the tiny ones."""
    if monkeypatch is None:
        engine.build_datasets = tiny_datasets
        engine.build_model = tiny_model
    else:
        monkeypatch.setattr(engine, "build_datasets", tiny_datasets)
        monkeypatch.setattr(engine, "build_model", tiny_model)


QUIET = """progress = false
plots = false
tensorboard = false"""  # the [run] keys of every test run: no progress bar, plots, TensorBoard

TINY_TOML = f"""
[run]
name = "tiny"
seed = 0
{QUIET}
[data]
name = "blobs"
T = 3
batch_size = 16
eval_batch_size = 16
[model]
name = "tiny"
neuron_kwargs = {{ init_potential = "learnable" }}
[train]
epochs = 2
lr = 0.01
weight_decay = 0.01
warmup_epochs = 0.5
loss = "lts_ce"
[eval]
readout = "last"
"""


def ddp_worker(rank: int, world: int, port: int, run_dir: str, overrides: list[str]):
    """One process of a ``world``-process run of :data:`TINY_TOML` (no BatchNorm)."""
    import os

    from membra.train import fit
    from membra.train.config import parse_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    patch()
    fit(parse_config(TINY_TOML, overrides), run_dir=run_dir, device="cpu",
        model=tiny_model(bn=False))


def config(*overrides):
    """:data:`TINY_TOML` with ``section.key=value`` overrides, parsed and validated."""
    from membra.train.config import parse_config

    return parse_config(TINY_TOML, list(overrides))


DIGITS_TOML = f"""
[run]
name = "z"
{QUIET}
[data]
name = "digits"
T = 2
[model]
name = "mlp"
[train]
epochs = 1
"""


def fit_digits(run_dir, *overrides) -> dict:
    """Train :data:`DIGITS_TOML` with ``section.key=value`` overrides on the CPU into
    ``run_dir``; returns ``fit``'s result (needs scikit-learn for the digits)."""
    from membra.train import fit
    from membra.train.config import parse_config

    return fit(parse_config(DIGITS_TOML, list(overrides)), run_dir=run_dir, device="cpu")


def reseal(path, edit) -> None:
    """Rewrite checkpoint ``path`` with ``edit(meta)`` applied to its metadata, through
    membra's writer (so the digest is valid again)."""
    from membra.train import checkpoint as ck

    tensors, meta = ck.load_checkpoint(path)
    meta.pop("format")
    edit(meta)
    ck.save_checkpoint(path, tensors, meta)
