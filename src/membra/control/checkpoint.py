"""Controller checkpoints: ``actor.safetensors`` (weights + observation normaliser buffers) and
``config.json`` (actor config, environment, training settings, measured returns). No pickle.

A checkpoint is a directory; :func:`load_actor` also accepts the name of a shipped controller
(``pendulum``, ``lidarnav``, ``halfcheetah``: see :func:`pretrained_path`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .actor import PopSANActor

__all__ = ["save_actor", "load_actor", "load_config", "update_config", "pretrained_path",
           "PRETRAINED"]

PRETRAINED = {"pendulum": "pendulum", "lidarnav": "lidarnav", "halfcheetah": "halfcheetah"}


def pretrained_path(name: str) -> Path:
    """Directory of a controller shipped with membra."""
    if name not in PRETRAINED:
        raise ValueError(f"no shipped controller {name!r}; choose one of {sorted(PRETRAINED)}")
    return Path(__file__).parent / "pretrained" / PRETRAINED[name]


def _resolve(path) -> Path:
    p = Path(path)
    if not p.exists() and str(path) in PRETRAINED:
        p = pretrained_path(str(path))
    if not (p / "config.json").is_file() or not (p / "actor.safetensors").is_file():
        raise FileNotFoundError(f"{path}: not a controller checkpoint (expected a directory "
                                "with config.json and actor.safetensors, or one of "
                                f"{sorted(PRETRAINED)})")
    return p


def save_actor(path, actor: PopSANActor, meta: dict | None = None) -> Path:
    """Write ``actor.safetensors`` and ``config.json`` (``{"actor": ..., **meta}``)."""
    from safetensors.torch import save_file

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in actor.state_dict().items()}
    save_file(state, str(p / "actor.safetensors"))
    (p / "dwam.safetensors").unlink(missing_ok=True)  # calibration of older weights
    cfg = {"actor": actor.config, **(meta or {})}
    (p / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return p


def load_config(path) -> dict:
    return json.loads((_resolve(path) / "config.json").read_text())


def update_config(path, **entries) -> None:
    """Merge ``entries`` into a checkpoint's ``config.json``."""
    p = _resolve(path) / "config.json"
    cfg = json.loads(p.read_text())
    cfg.update(entries)
    p.write_text(json.dumps(cfg, indent=2) + "\n")


def load_actor(path) -> tuple[PopSANActor, dict]:
    """``(actor in eval mode, config dict)`` from a checkpoint directory or shipped name."""
    from safetensors.torch import load_file

    p = _resolve(path)
    cfg = json.loads((p / "config.json").read_text())
    actor = PopSANActor(**cfg["actor"])
    actor.load_state_dict(load_file(str(p / "actor.safetensors")))
    actor.eval()
    return actor, cfg
