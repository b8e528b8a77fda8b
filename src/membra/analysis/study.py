r"""The IMP study runner (membrane-dynamics spec §11): train one arm on one dataset with one
seed, evaluate per-step accuracy, both readouts and SOPs, and write a small run folder that
:func:`membra.analysis.imp_report.imp_report` aggregates.

An arm is an initial potential and a loss (:data:`ARMS`): ``baseline`` (``V_0 = 0``, mean CE),
``imp`` (learnable ``V_0``, mean CE), ``imp_lts``, ``imp_tet``, ``imp_ls_tet``, and ``lts``
(``V_0 = 0``, last-step CE). Configs are the TOML run files of ``membra train``
(sections ``run``, ``data``, ``model``, ``train``, ``eval``); this runner reads the subset it
needs so the study runs before/without the full engine:

- data: ``membra.data.get_dataset`` (whole splits held in memory as tensors, which is what
  makes 54 runs fit in minutes on 2 CPU cores);
- model: ``membra.models.create_model`` (``model.name``, ``model.options``,
  ``model.neuron_kwargs``), e.g. the spec's ``mlp`` 64-128-128-10 with BN and LIF;
- training: AdamW (``train.lr``, ``train.weight_decay`` on weight matrices only,
  :func:`membra.nn.param_groups`), batch ``data.batch_size``, ``train.epochs``, constant lr,
  the config's loss. The same config runs through ``membra train`` (the full engine with
  checkpoints, per-epoch evaluation and plots) with the same meaning.

Run folder: ``config.json`` (resolved config), ``metrics.json`` (``per_step_accuracy [T]``,
``acc_mean``, ``acc_last``, ``static_input`` (the input is the same at every step),
``sops``...), ``model.safetensors`` (state dict; IMP tensors are the
keys ending in ``init_potential``).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from .. import losses as L
from ..energy import sops
from ..metrics import per_step_accuracy, readout_accuracy
from ..nn import param_groups

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ARMS", "load_study_config", "build_model", "load_data", "run_arm", "load_study_run"]

ARMS: dict[str, dict] = {
    "baseline": {"init_potential": 0.0, "loss": "mean_ce"},
    "imp": {"init_potential": "learnable", "loss": "mean_ce"},
    "imp_lts": {"init_potential": "learnable", "loss": "lts_ce"},
    "imp_tet": {"init_potential": "learnable", "loss": "tet"},
    "imp_ls_tet": {"init_potential": "learnable", "loss": "ls_tet"},
    "lts": {"init_potential": 0.0, "loss": "lts_ce"},
}
"""Study arms: initial potential and training loss."""

DEFAULTS = {
    "run": {"name": "run", "seed": 0, "out_dir": "runs"},
    "data": {"name": "digits", "T": 4, "batch_size": 64, "eval_batch_size": 256,
             "encoding": "direct", "options": {}},
    "model": {"name": "mlp", "neuron": "lif", "neuron_kwargs": {}, "options": {}},
    "train": {"epochs": 40, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01,
              "loss": "mean_ce", "loss_eps": 0.01, "loss_lambda": 0.0, "loss_phi": 1.0,
              "schedule": "constant"},
    "eval": {"readout": "mean"},
}


def load_study_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a TOML run config into a dict with :data:`DEFAULTS` filled in; ``overrides``
    is ``{"section.key": value}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    cfg = copy.deepcopy(DEFAULTS)
    for sec, vals in raw.items():
        if sec not in cfg or not isinstance(vals, dict):
            raise ValueError(f"{path}: unknown config section {sec!r}; expected one of "
                             f"{list(cfg)}")
        cfg[sec].update(vals)
    for key, val in (overrides or {}).items():
        sec, _, k = key.partition(".")
        if sec not in cfg or not k:
            raise ValueError(f"override {key!r} must be section.key with a section in "
                             f"{list(cfg)}")
        cfg[sec][k] = val
    if cfg["train"]["loss"] not in L.LOSSES:
        raise ValueError(f"{path}: train.loss={cfg['train']['loss']!r} is not known; choose "
                         f"one of {list(L.LOSSES)}")
    return cfg


def load_data(cfg: dict):
    """Whole splits in memory from :func:`membra.data.get_dataset`:
    ``(x_train [N, T, *S], y_train, x_test, y_test, in_shape, num_classes)``."""
    from ..data import get_dataset

    d = cfg["data"]
    out = []
    for split in ("train", "test"):
        ds = get_dataset(d["name"], split=split, T=int(d["T"]), root=d.get("root"), seed=0,
                         encoding=d["encoding"], **d.get("options", {}))
        xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
        out += [torch.stack(xs).float(), torch.as_tensor(ys)]
    info = ds.info
    return (*out, tuple(info.in_shape), int(info.num_classes))


def build_model(in_shape, num_classes: int, cfg: dict) -> nn.Module:
    """The config's model from the zoo (:func:`membra.models.create_model`)."""
    from ..models import create_model

    m = cfg["model"]
    return create_model(m["name"], in_shape=tuple(in_shape), num_classes=num_classes,
                        neuron=m["neuron"], neuron_kwargs=dict(m["neuron_kwargs"]),
                        **m.get("options", {}))


def _loss(cfg: dict):
    t = cfg["train"]
    name = t["loss"]
    if name == "tet":
        return lambda o, y: L.tet(o, y, lam=t["loss_lambda"], phi=t["loss_phi"])
    if name == "ls_tet":
        return lambda o, y: L.ls_tet(o, y, eps=t["loss_eps"])
    if name in ("mean_ce", "lts_ce"):
        return getattr(L, name)
    raise ValueError(f"train.loss={name!r} is not known; choose mean_ce, lts_ce, tet, ls_tet")


@torch.no_grad()
def _evaluate(model, x, y, batch: int):
    model.eval()
    outs = [model(x[i:i + batch].transpose(0, 1)) for i in range(0, len(x), batch)]
    return torch.cat(outs, dim=1)


def run_arm(config: str | Path | dict, *, seed: int | None = None,
            out_dir: str | Path | None = None, overrides: dict | None = None,
            log=print) -> dict:
    """Train and evaluate one config; write the run folder; return the metrics dict."""
    cfg = config if isinstance(config, dict) else load_study_config(config, overrides)
    cfg = copy.deepcopy(cfg)
    if seed is not None:
        cfg["run"]["seed"] = int(seed)
    seed = int(cfg["run"]["seed"])
    xtr, ytr, xte, yte, in_shape, K = load_data(cfg)
    torch.manual_seed(seed)
    model = build_model(in_shape, K, cfg)
    t = cfg["train"]
    opt = torch.optim.AdamW(param_groups(model, float(t["weight_decay"])), lr=float(t["lr"]))
    loss_fn = _loss(cfg)
    g = torch.Generator().manual_seed(seed)
    bs = int(cfg["data"]["batch_size"])
    start = time.time()
    for _ in range(int(t["epochs"])):
        model.train()
        total = 0.0
        for idx in torch.randperm(len(xtr), generator=g).split(bs):
            loss = loss_fn(model(xtr[idx].transpose(0, 1)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
    train_s = time.time() - start
    out = _evaluate(model, xte, yte, int(cfg["data"]["eval_batch_size"]))
    rep = sops(model.eval(), xte[:256].transpose(0, 1))
    metrics = {
        "name": cfg["run"]["name"], "dataset": cfg["data"]["name"], "seed": seed,
        "T": int(cfg["data"]["T"]), "loss": t["loss"],
        "init_potential": cfg["model"]["neuron_kwargs"].get("init_potential", 0.0),
        "in_shape": list(in_shape), "num_classes": K,
        "per_step_accuracy": per_step_accuracy(out, yte).tolist(),
        "acc_mean": readout_accuracy(out, yte, "mean"),
        "acc_last": readout_accuracy(out, yte, "last"),
        "static_input": bool(xte.shape[1] > 1 and (xte == xte[:, :1]).all()),
        "train_loss": total / len(xtr), "train_seconds": train_s,
        "sops": {k: v for k, v in rep.as_dict().items() if k != "layers"},
    }
    if out_dir is not None:
        run = Path(out_dir) / f"{cfg['run']['name']}_s{seed}"
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(cfg, indent=2))
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (run / "sops.md").write_text(rep.to_markdown() + "\n")
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                  str(run / "model.safetensors"))
        metrics["run_dir"] = str(run)
    log(f"{cfg['run']['name']} seed {seed}: per-step "
        f"{' '.join(f'{100 * a:.1f}' for a in metrics['per_step_accuracy'])} | mean "
        f"{100 * metrics['acc_mean']:.1f} last {100 * metrics['acc_last']:.1f} "
        f"({train_s:.0f} s)")
    return metrics


def load_study_run(run_dir: str | Path) -> tuple[nn.Module, tuple[int, ...], dict]:
    """``(model in eval mode, in_shape, metrics)`` of a run folder written by :func:`run_arm`."""
    run = Path(run_dir)
    for name in ("config.json", "metrics.json", "model.safetensors"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run / name} not found: not a study run folder")
    cfg = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    if "in_shape" not in metrics:
        raise ValueError(f"{run / 'metrics.json'} has no in_shape (written by an older runner)")
    in_shape = tuple(metrics["in_shape"])
    model = build_model(in_shape, int(metrics["num_classes"]), cfg)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(run / "model.safetensors")))
    return model.eval(), in_shape, metrics
