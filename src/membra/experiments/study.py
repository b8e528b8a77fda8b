r"""The IMP study on :func:`membra.train.fit`: every study run is an ordinary run, from an
ordinary run config, into an ordinary run folder (``membra eval``, ``membra.load_run`` and
TensorBoard read it).

An arm is an initial potential and a loss (:data:`ARMS`): ``baseline`` (``V_0 = 0``, mean CE),
``imp`` (learnable ``V_0``, mean CE), ``imp_lts``, ``imp_tet``, ``imp_ls_tet``, and ``lts``
(``V_0 = 0``, last-step CE). ``configs/study/<dataset>/<arm>.toml`` holds one run config per
arm; :func:`study_config` adds the seed, the run folder ``<out>/<run.name>_s<seed>`` and
the labels ``run.tags = { study = "imp", arm = ..., seed = ... }``.

Paired comparisons: the data order of a run depends only on ``run.seed`` (and the epoch), so
two arms run with the same seed see the same batches in the same order, and their
differences are paired. Their initial weights agree up to the first layer with a learnable
initial potential (drawing ``V_0`` advances the global generator; see the report).

What the study adds to a run is measured at its end by :class:`StudyMeasures` and stored in
``summary.json`` under ``study``: arm, seed, whether the input is the same at every step
(``static_input``), and the synaptic operations / energy per sample on the first 256 test
samples (:func:`membra.energy.sops`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..energy import sops
from ..train import Callback, fit, load_config
from ..train.checkpoint import LATEST
from ..train.config import RunConfig, dump_config

__all__ = ["ARMS", "arm_of", "study_config", "run_arm", "StudyMeasures"]

ARMS: dict[str, dict] = {
    "baseline": {"init_potential": 0.0, "loss": "mean_ce"},
    "imp": {"init_potential": "learnable", "loss": "mean_ce"},
    "imp_lts": {"init_potential": "learnable", "loss": "lts_ce"},
    "imp_tet": {"init_potential": "learnable", "loss": "tet"},
    "imp_ls_tet": {"init_potential": "learnable", "loss": "ls_tet"},
    "lts": {"init_potential": 0.0, "loss": "lts_ce"},
}
"""Study arms: initial potential and training loss."""

#: test samples the SOP count and the static-input check look at
SOP_SAMPLES = 256


def arm_of(init_potential, loss: str) -> str | None:
    """The arm with this initial potential (``"learnable"`` or 0) and loss, else ``None``."""
    for arm, spec in ARMS.items():
        if spec["init_potential"] == init_potential and spec["loss"] == loss:
            return arm
    return None


def study_config(config, *, seed: int | None = None, out_dir=None, overrides=()) -> RunConfig:
    """The run config of one study run: ``config`` (a TOML path or a :class:`RunConfig`)
    with ``overrides`` (``section.key=value``), ``run.seed = seed``, run folder
    ``<out_dir>/<run.name>_s<seed>`` and ``run.tags`` naming the study, arm and seed.

    A config that is not one of the :data:`ARMS` (initial potential and loss) is a
    ``ValueError``."""
    over = list(overrides)
    if seed is not None:
        over.append(f"run.seed={int(seed)}")
    if isinstance(config, RunConfig):
        cfg = config.replace(run__seed=int(seed)) if seed is not None else config
        if overrides:
            raise ValueError("overrides go with a TOML path, not with a RunConfig")
    else:
        cfg = load_config(config, over)
    init = cfg.model.neuron_kwargs.get("init_potential", 0.0)
    arm = arm_of(init, cfg.train.loss)
    if arm is None:
        raise ValueError(f"config {config!s}: model.neuron_kwargs.init_potential={init!r} with "
                         f"train.loss={cfg.train.loss!r} is not an IMP-study arm; arms: "
                         + ", ".join(f"{a} ({s['init_potential']!r}, {s['loss']})"
                                     for a, s in ARMS.items()))
    s = cfg.run.seed
    return cfg.replace(run__name=f"{cfg.run.name}_s{s}",
                       run__out_dir=str(out_dir) if out_dir is not None else cfg.run.out_dir,
                       run__tags={**cfg.run.tags, "study": "imp", "arm": arm, "seed": s})


class StudyMeasures(Callback):
    """At the end of a run, adds ``summary["study"]``: ``arm``, ``seed``, ``static_input``
    (the first :data:`SOP_SAMPLES` test inputs are the same at every step) and ``sops``
    (:meth:`membra.energy.SopReport.as_dict` without the per-layer rows), ``in_shape`` and
    ``num_classes``."""

    def on_fit_end(self, run, state, summary):
        if not (run.is_main and state.history):
            return
        ds = run.test_ds
        x = torch.stack([ds[i][0] for i in range(min(SOP_SAMPLES, len(ds)))]).float()
        x = x.transpose(0, 1).to(run.ctx.device)                  # [T, B, *S]
        with torch.no_grad():
            rep = sops(run.model.eval(), x)
        tags = run.cfg.run.tags
        summary["study"] = {
            "arm": tags.get("arm"), "seed": run.cfg.run.seed,
            "static_input": bool(x.shape[0] > 1 and (x == x[:1]).all()),
            "sops": {k: v for k, v in rep.as_dict().items() if k != "layers"},
            "in_shape": list(run.info.in_shape), "num_classes": int(run.info.num_classes)}


def _finished(run_dir: Path, cfg: RunConfig) -> bool:
    """Whether ``run_dir`` holds a completed run of exactly ``cfg``; a folder holding another
    run is a ``ValueError``."""
    if not (run_dir / "config.toml").is_file():
        return False
    if (run_dir / "config.toml").read_text() != dump_config(cfg):
        raise ValueError(f"run folder {str(run_dir)!r} holds a run of another config; choose "
                         "another --out or remove it")
    import json

    summary = run_dir / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "completed"


def run_arm(config, *, seed: int | None = None, out_dir=None, overrides=(), log=print,
            device: str | None = "cpu", callbacks=()) -> dict:
    """Train one study run with :func:`membra.train.fit` and return its summary (with
    ``study``, see :class:`StudyMeasures`). A run folder that already holds this run
    completed is read instead of trained again; one that holds it interrupted is resumed.

    Example::

        run_arm("configs/study/digits/imp_lts.toml", seed=1, out_dir="runs/study")
    """
    cfg = study_config(config, seed=seed, out_dir=out_dir, overrides=overrides)
    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    if _finished(run_dir, cfg):
        import json

        out = json.loads((run_dir / "summary.json").read_text())
        log(f"{cfg.run.name}: already done in {run_dir}")
        return out
    resume = run_dir if (run_dir / "checkpoints" / LATEST).exists() else None
    out = fit(cfg, run_dir=run_dir, resume=resume, device=device,
              callbacks=[StudyMeasures(), *callbacks])
    if "study" in out:
        log(f"{cfg.run.name}: per-step "
            f"{' '.join(f'{100 * a:.1f}' for a in out['test_acc_per_step'])} | mean "
            f"{100 * out['test_acc_mean']:.1f} last {100 * out['test_acc_last']:.1f}")
    return out
