"""Load a trained run: :func:`load_run` is membra's one model loader.

It rebuilds the model of a run folder (or one checkpoint file) from the config stored in the
checkpoint and the shapes :func:`membra.train.fit` records there (``model_info``: per-sample
input shape, number of classes, and the class of a custom model passed as ``fit(cfg,
model=...)``), then loads the weights strictly. The dataset is not built, except for runs
written before ``model_info`` existed (a one-line warning says so).

Every guarantee of ``docs/training.md`` ("Integrity guarantees") holds: the checkpoint is read
through :func:`~membra.train.checkpoint.load_run_checkpoint` (digest of every byte, metadata
schema, ``latest`` kept inside ``checkpoints/``), and nothing is unpickled.

Example::

    import membra
    run = membra.load_run("runs/digits_imp_lts")
    logits = run.model(x)                       # x [T, B, *run.in_shape]
    run = membra.load_run("runs/mine", model=MyNet())   # a run of fit(cfg, model=MyNet())
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from torch import nn

from . import checkpoint as ckpt
from .config import RunConfig, config_from_dict

__all__ = ["Run", "load_run", "model_info", "model_state", "recorded_shapes", "save_pretrained"]


@dataclass(frozen=True)
class Run:
    """A loaded run: the model (eval mode, weights of ``checkpoint``), its resolved config and
    the checkpoint's metadata (``epoch``, ``step``, ``history``, ``model_info`` ...)."""

    model: nn.Module
    config: RunConfig
    meta: dict
    checkpoint: Path
    #: per-sample input shape and number of classes (``None`` only for a run written before
    #: membra recorded them, loaded with ``model=``)
    in_shape: tuple[int, ...] | None
    num_classes: int | None
    #: ``"name (a NaN, b inf of n)"`` for every model tensor that is not finite
    non_finite: list[str] = field(default_factory=list)

    @property
    def custom_model(self) -> dict | None:
        """``{"class": ..., "module": ...}`` when the run was trained with ``fit(cfg,
        model=...)``, else ``None``."""
        return (self.meta.get("model_info") or {}).get("custom")

    @property
    def model_name(self) -> str:
        """The custom model's class name, or the config's ``model.name``."""
        custom = self.custom_model
        return custom["class"] if custom else self.config.model.name


def model_info(in_shape, num_classes: int, model: nn.Module | None) -> dict:
    """The ``model_info`` entry of a checkpoint: ``{"in_shape": [...], "num_classes": K,
    "custom": None | {"class": qualname, "module": module}}``; ``model`` is the module the
    user passed to ``fit`` (``None`` when the config's model was built)."""
    custom = None if model is None else {"class": type(model).__qualname__,
                                         "module": type(model).__module__}
    return {"in_shape": [int(d) for d in in_shape], "num_classes": int(num_classes),
            "custom": custom}


def model_state(tensors: dict) -> dict:
    """The model's state dict inside a training checkpoint's tensors (keys ``model.*``)."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def recorded_shapes(cfg: RunConfig, meta: dict, path) -> tuple[tuple[int, ...], int]:
    """``(in_shape, num_classes)`` recorded in the (schema-checked) metadata ``meta`` of the
    checkpoint ``path``; for runs written before membra recorded them, from the dataset of
    ``cfg`` (with a warning)."""
    info = meta.get("model_info")
    if info is not None:
        return tuple(info["in_shape"]), info["num_classes"]
    from . import engine

    warnings.warn(f"checkpoint {str(path)!r} was written by an older membra without the "
                  "model's input shape; building the dataset to learn it", UserWarning,
                  stacklevel=3)
    info = engine._info(engine.build_datasets(cfg)[1])
    return tuple(info.in_shape), info.num_classes


def _custom_error(path: Path, cfg: RunConfig, custom: dict) -> ValueError:
    cls, mod = custom["class"], custom["module"]
    return ValueError(
        f"the run of {str(path)!r} was trained with a custom model, {cls} (module {mod}), not "
        f"the config's model {cfg.model.name!r}, so it cannot be rebuilt from the config; "
        f"build the module again and pass it: load_run(path, model={cls}(...)) (membra eval and "
        "membra export nir only rebuild models of the zoo)")


def load_run(path, *, checkpoint=None, model: nn.Module | None = None, device=None) -> Run:
    """Load the model of a training run.

    Args:
        path: a run folder (``runs/<name>``, read through ``checkpoints/latest``) or a
            checkpoint file written by ``membra train``.
        checkpoint: a checkpoint file to use instead of the run's latest.
        model: the module to load the weights into; needed for runs trained with ``fit(cfg,
            model=...)`` (the message names its class), optional otherwise.
        device: where to put the model (default CPU).

    Returns:
        :class:`Run` with the model in eval mode.

    Raises:
        FileNotFoundError: no run folder or checkpoint at ``path``.
        ValueError: a corrupted, altered or malformed checkpoint (docs/training.md,
            "Integrity guarantees"), a custom-model run without ``model=``, or weights that
            do not match the model (names and shapes listed).
    """
    ck_path, tensors, meta = ckpt.load_run_checkpoint(
        checkpoint if checkpoint is not None else path)
    cfg = config_from_dict(meta["config"])
    state = model_state(tensors)
    custom = (meta.get("model_info") or {}).get("custom")
    if model is None:
        if custom:
            raise _custom_error(ck_path, cfg, custom)
        from . import engine

        in_shape, num_classes = recorded_shapes(cfg, meta, ck_path)
        model = engine.build_model(cfg, SimpleNamespace(in_shape=in_shape,
                                                        num_classes=num_classes))
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    else:
        info = meta.get("model_info")
        in_shape = tuple(info["in_shape"]) if info else None
        num_classes = info["num_classes"] if info else None
    try:
        ckpt.load_model_state(model, state, source=f"checkpoint {str(ck_path)!r}")
    except ValueError as err:
        hint = ("" if custom or meta.get("model_info") else
                "; if the run was trained with fit(cfg, model=...), pass that module: "
                "load_run(path, model=...)")
        raise ValueError(f"{err}{hint}") from None
    return Run(model=model.to(device or "cpu").eval(), config=cfg, meta=meta,
               checkpoint=ck_path, in_shape=in_shape, num_classes=num_classes,
               non_finite=ckpt.non_finite_tensors(
                   {k: v for k, v in tensors.items() if k.startswith("model.")}))


def save_pretrained(path, folder, *, made_with: str, checkpoint=None) -> Path:
    """Write the model of a run as a shipped pretrained model (see
    :mod:`membra.models.pretrained`): ``folder/model.safetensors`` and ``folder/config.json``
    with the zoo model, shapes, run config, the last epoch's test accuracy and ``made_with``
    (the command that trained it). Only zoo models can be shipped (no custom-model runs)."""
    import hashlib
    import json

    from safetensors.torch import save

    run = load_run(path, checkpoint=checkpoint)
    if not run.meta["history"]:
        raise ValueError(f"run {str(run.checkpoint)!r} finished no epoch; nothing to ship")
    m = run.config.model
    last = run.meta["history"][-1]
    config = json.loads(json.dumps(run.meta["config"]))
    config["run"]["out_dir"] = "runs"  # where it ran says nothing about the model
    raw = save({k: v.detach().to("cpu", copy=True).contiguous()
                for k, v in run.model.state_dict().items()})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"model": {"name": m.name, "neuron": m.neuron,
                        "neuron_kwargs": dict(m.neuron_kwargs), "options": dict(m.options)},
              "in_shape": list(run.in_shape), "num_classes": run.num_classes,
              "test_acc": last["test_acc"], "readout": run.config.eval.readout,
              "epoch": run.meta["epoch"], "config": config, "made_with": made_with,
              "sha256": hashlib.sha256(raw).hexdigest()}
    ckpt.atomic_write_bytes(folder / "model.safetensors", raw)
    ckpt.atomic_write_bytes(folder / "config.json",
                            (json.dumps(record, indent=2) + "\n").encode())
    return folder
