"""Controller checkpoints: ``actor.safetensors`` (weights + observation normaliser buffers) and
``config.json`` (actor config, environment, training settings, measured returns). No pickle.

A checkpoint is a directory; :func:`load_actor` also accepts the name of a shipped controller
(``pendulum``, ``lidarnav``, ``halfcheetah``, ``pendulum_bdett``, ``lidarnav_bdett``: see
:func:`pretrained_path`).
A local folder of the same name takes precedence, with a warning; ``shipped:NAME`` always means
the shipped one.
Shipped controllers are read-only: nothing membra does writes into the installed package.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .actor import PopSANActor

__all__ = ["save_actor", "load_actor", "load_config", "update_config", "pretrained_path",
           "is_shipped", "PRETRAINED", "SHIPPED_PREFIX"]

PRETRAINED = {"pendulum": "pendulum", "lidarnav": "lidarnav", "halfcheetah": "halfcheetah",
              "pendulum_bdett": "pendulum_bdett", "lidarnav_bdett": "lidarnav_bdett"}
SHIPPED_PREFIX = "shipped:"


def pretrained_path(name: str) -> Path:
    """Directory of a controller shipped with membra."""
    if name not in PRETRAINED:
        raise ValueError(f"no shipped controller {name!r}; choose one of {sorted(PRETRAINED)}")
    return Path(__file__).parent / "pretrained" / PRETRAINED[name]


def is_shipped(path) -> bool:
    """Whether ``path`` lies inside the installed package's shipped controllers."""
    root = (Path(__file__).parent / "pretrained").resolve()
    return Path(path).resolve().is_relative_to(root)


def _resolve(path) -> Path:
    """Checkpoint directory of ``path``: a folder, ``shipped:NAME`` or a shipped ``NAME``
    (a local folder called ``NAME`` wins, with a warning; one that is not a checkpoint is an
    error that says so)."""
    text = str(path)
    if text.startswith(SHIPPED_PREFIX):
        return _resolve(pretrained_path(text[len(SHIPPED_PREFIX):]))
    p = Path(path)
    if text in PRETRAINED:
        if not p.exists():
            p = pretrained_path(text)
        elif (p / "config.json").is_file() and (p / "actor.safetensors").is_file():
            warnings.warn(f"'{text}' is the local folder {p.resolve()}, not the shipped "
                          f"controller; use '{SHIPPED_PREFIX}{text}' for the shipped one",
                          UserWarning, stacklevel=3)
        else:
            raise FileNotFoundError(
                f"'{text}': the local folder {p.resolve()} shadows the shipped controller "
                f"'{text}' and is not a controller checkpoint; use '{SHIPPED_PREFIX}{text}' "
                "for the shipped one")
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
    """Merge ``entries`` into a checkpoint's ``config.json`` (never a shipped one:
    ``PermissionError``)."""
    p = _resolve(path) / "config.json"
    if is_shipped(p):
        raise PermissionError(f"{path}: shipped controllers are read-only; copy the folder "
                              f"{p.parent} somewhere and pass that path")
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
