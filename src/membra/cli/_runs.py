"""Load the model of a run folder for the CLI: a ``membra train`` run (``config.toml`` +
``checkpoints/``, or a checkpoint file); IMP-study runs are such runs."""

from __future__ import annotations

from pathlib import Path


def load_run_model(path: Path):
    """``(model in eval mode, in_shape)`` of a run folder or checkpoint file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run folder or checkpoint not found: {path}")
    from ..train.checkpoint import load_model_state, load_run_checkpoint
    from ..train.config import config_from_dict
    from ..train.engine import _info, build_datasets, build_model

    ckpt, tensors, meta = load_run_checkpoint(path)
    cfg = config_from_dict(meta["config"])
    _, test_ds = build_datasets(cfg)
    info = _info(test_ds)
    model = build_model(cfg, info)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    load_model_state(model, state, source=f"checkpoint {str(ckpt)!r}")
    return model.eval(), tuple(info.in_shape)
