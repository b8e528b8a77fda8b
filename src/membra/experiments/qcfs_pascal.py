"""The QCFS -> PASCAL recipe: QCFS training through :func:`membra.train.fit`, the AL stage,
loading a trained conversion run back (:func:`membra.train.load_run`), and its report.

It composes public API only: :mod:`membra.convert` (QCFS nets, AL, PASCAL and naive SNNs,
:func:`~membra.convert.report.evaluate_snn`) and :mod:`membra.train` (``fit``, ``load_run``,
configs, datasets, atomic writes); ``convert`` itself never imports ``train``.

A conversion run file is a ``membra train`` TOML file plus a ``[convert]`` table
(:class:`ConvertSection`). Stage 1 trains the QCFS ANN at a uniform ``L``; with ``al = true``
:func:`~membra.convert.al_select` then picks per-layer levels on training batches and stage 2
fine-tunes for ``al_epochs`` at ``al_lr`` (run folder ``<run>/al``). ``convert.json`` in the
run folder records the net, the levels of each stage and where their checkpoints are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..convert import al_select, build_net, get_L, replace_relu, set_L
from ..convert.report import evaluate_snn, steps_to_reach
from ..train import fit, load_run
from ..train.checkpoint import atomic_write_bytes, load_run_checkpoint
from ..train.config import apply_overrides, config_from_dict, config_to_dict, parse_override
from ..train.engine import build_datasets
from ..train.runs import recorded_shapes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ConvertSection", "StaticANN", "load_convert_config", "train_convert",
           "load_stage", "stages", "eval_batches", "evaluate_stage", "write_report"]


@dataclass(frozen=True)
class ConvertSection:
    """``[convert]``: the ANN, its QCFS levels and the AL stage."""

    net: str = "digits_net"                 # membra.convert.NETS
    options: dict = field(default_factory=dict)   # keyword options of the net builder
    L: int = 8                              # uniform level of stage 1
    lam_init: float = 8.0                   # initial clip value of every QCFS
    al: bool = False                        # run the AL stage
    al_epochs: int = 20                     # stage-2 epochs
    al_lr: float = 1e-3                     # stage-2 peak learning rate
    al_tau: float = 0.1                     # distortion threshold
    al_candidates: tuple = (1, 2, 4, 8, 16)
    calib_batches: int = 8                  # training batches for AL statistics


def _section(raw: dict) -> ConvertSection:
    names = {f.name: f for f in dataclasses.fields(ConvertSection)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ValueError(f"unknown config key 'convert.{unknown[0]}'; valid keys: "
                         f"{', '.join(sorted(names))}")
    defaults = ConvertSection()
    out = {}
    for k, v in raw.items():
        want = type(getattr(defaults, k))
        if k == "al_candidates":
            if not isinstance(v, (list, tuple)) or not all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in v):
                raise ValueError(f"convert.al_candidates must be a list of positive ints, got "
                                 f"{v!r}")
            v = tuple(v)
        elif want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        elif not isinstance(v, want) or isinstance(v, bool) != (want is bool):
            raise ValueError(f"convert.{k} must be {want.__name__}, got {v!r}")
        out[k] = v
    sec = ConvertSection(**out)
    for k in ("L", "al_epochs", "calib_batches"):
        if getattr(sec, k) < 1:
            raise ValueError(f"convert.{k} must be >= 1, got {getattr(sec, k)!r}")
    for k in ("lam_init", "al_lr", "al_tau"):
        if not getattr(sec, k) > 0:
            raise ValueError(f"convert.{k} must be > 0, got {getattr(sec, k)!r}")
    return sec


def load_convert_config(path, overrides=()):
    """``(RunConfig, ConvertSection)`` of a conversion run file; ``convert.key=value``
    overrides go to the ``[convert]`` table, the others to the run config."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found (expected a TOML run file "
                                "with a [convert] table, e.g. configs/convert_digits.toml)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}") from None
    conv = dict(data.pop("convert", {}))
    rest = []
    for text in overrides or ():
        key, value = parse_override(text)
        if key[0] == "convert":
            conv[key[1]] = value
        else:
            rest.append(text)
    cfg = config_from_dict(apply_overrides(data, rest))
    if cfg.data.T != 1:
        raise ValueError(f"data.T must be 1 for QCFS training (the ANN sees each sample once), "
                         f"got {cfg.data.T}")
    return cfg, _section(conv)


class StaticANN(nn.Module):
    """The ANN as an engine model: ``[1, B, ...] -> [1, B, K]``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise ValueError(f"the QCFS ANN takes one time step ([1, B, ...]), got T={x.shape[0]}")
        return self.net(x[0]).unsqueeze(0)


def _build(cfg, sec: ConvertSection, L, in_shape, num_classes) -> nn.Module:
    """The QCFS net of ``sec`` at level ``L``, initialised from ``run.seed``."""
    torch.manual_seed(cfg.run.seed)
    net = build_net(sec.net, in_shape=tuple(in_shape), num_classes=num_classes, **sec.options)
    return replace_relu(net, L=L, lam_init=sec.lam_init)


def _calibration(cfg, sec):
    train_ds = build_datasets(cfg)[0]
    g = torch.Generator().manual_seed(cfg.run.seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.data.batch_size,
                                         shuffle=True, generator=g)
    return loader


def train_convert(cfg, sec: ConvertSection, *, run_dir=None, resume=None, device=None,
                  log=print) -> dict:
    """Stage 1 (uniform L) and, when ``sec.al``, AL selection + stage 2; returns the
    ``convert.json`` record plus ``run_dir``, the folder it went to (``fit`` picks
    ``<run_dir>-1`` when ``run_dir`` already holds a run). ``resume``: an interrupted stage-1
    run folder to continue (in that folder) instead of starting a new one."""
    info = build_datasets(cfg)[1].info
    net = _build(cfg, sec, sec.L, info.in_shape, info.num_classes)
    m1 = fit(cfg, run_dir=None if resume is not None else run_dir, resume=resume,
             device=device, model=StaticANN(net))
    run = Path(m1["run_dir"])
    record = {"net": sec.net, "options": sec.options, "lam_init": sec.lam_init,
              "convert": dataclasses.asdict(sec),
              "stages": [{"name": "uniform", "L": get_L(net), "run_dir": ".",
                          "test_acc": m1["test_acc"], "status": m1["status"]}]}
    _write_record(run, record)
    if sec.al and m1["status"] == "completed":
        L_map = al_select(net, _calibration(cfg, sec), candidates=sec.al_candidates,
                          tau=sec.al_tau, max_batches=sec.calib_batches,
                          prepare=lambda x: x.transpose(0, 1)[0])
        log(f"AL levels: {L_map} (sum {sum(L_map.values())}, uniform "
            f"{sec.L * len(L_map)})")
        set_L(net, L_map)
        d = config_to_dict(cfg)
        d["train"].update(epochs=sec.al_epochs, lr=sec.al_lr, warmup_epochs=0.0)
        m2 = fit(config_from_dict(d), run_dir=run / "al", device=device, model=StaticANN(net))
        record["stages"].append({"name": "al", "L": L_map, "run_dir": "al",
                                 "test_acc": m2["test_acc"], "status": m2["status"]})
        _write_record(run, record)
    return {**record, "run_dir": str(run)}


def _write_record(run: Path, record: dict) -> None:
    atomic_write_bytes(run / "convert.json", json.dumps(record, indent=2).encode())


#: The stage folders a conversion run writes, relative to the run folder.
_STAGE_DIRS = {"uniform": ".", "al": "al"}


def read_json(path: Path, bad) -> object:
    """The JSON value in ``path``; a file that is not UTF-8 JSON (or nests too deep) raises
    ``bad(what)``, the caller's error naming the file and what writes it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise bad(f"is not readable JSON ({type(err).__name__})") from None


def _read_record(path: Path) -> dict:
    """``convert.json``, checked: its stages are the known ones, in order, each with its own
    folder inside the run (never a path read from the file), an ``L`` and a ``convert`` section;
    anything else is a ``ValueError`` naming the file."""
    def bad(what: str):
        return ValueError(f"{str(path)!r} is not a valid conversion record: {what} (it is "
                          "written by `membra convert train`; retrain rather than edit it)")

    record = read_json(path, bad)
    if not isinstance(record, dict) or not isinstance(record.get("convert"), dict):
        raise bad("no 'convert' section")
    stages = record.get("stages")
    if not isinstance(stages, list) or not stages:
        raise bad("no 'stages' list")
    for i, st in enumerate(stages):
        name = st.get("name") if isinstance(st, dict) else None
        if name not in _STAGE_DIRS or list(_STAGE_DIRS)[i] != name:
            raise bad(f"stage {i} is {name!r}; expected {list(_STAGE_DIRS)[i:i + 1]}")
        if st.get("run_dir") != _STAGE_DIRS[name]:
            raise bad(f"stage {name!r} names folder {st.get('run_dir')!r}; it must be "
                      f"{_STAGE_DIRS[name]!r} inside the run")
        L = st.get("L")
        ok_int = isinstance(L, int) and not isinstance(L, bool) and L >= 1
        ok_map = isinstance(L, dict) and L and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in L.values())
        if not (ok_int or ok_map):
            raise bad(f"stage {name!r} has L={L!r}; expected an int >= 1 or a layer -> int map")
    return record


def _stage_dir(root: Path, rel: str) -> Path:
    """The stage folder ``root/rel``, which must resolve inside ``root`` (no symlink out)."""
    folder = Path(os.path.realpath(root / rel))
    top = Path(os.path.realpath(root))
    if folder != top and top not in folder.parents:
        raise ValueError(f"stage folder {str(root / rel)!r} leads outside the conversion run "
                         f"{str(root)!r} (a symbolic link?); refusing to read through it")
    return folder


def stages(run) -> tuple[Path, dict]:
    """``(run folder, convert.json record)`` of a conversion run folder (or a path inside it)."""
    p = Path(run)
    for cand in (p, *p.parents):
        if (cand / "convert.json").is_file():
            return cand, _read_record(cand / "convert.json")
    raise FileNotFoundError(f"{str(p)!r} is not inside a conversion run folder (no "
                            "convert.json; train one with `membra convert train CONFIG`)")


def load_stage(run, stage: str | None = None, device=None):
    """``(ANN in eval mode, RunConfig, stage record)`` of a conversion run; ``stage`` is
    ``"uniform"`` or ``"al"`` (default: the last one trained)."""
    root, record = stages(run)
    names = [s["name"] for s in record["stages"]]
    if stage is None:
        stage = names[-1]
    if stage not in names:
        raise ValueError(f"run {str(root)!r} has stages {names}, not {stage!r}")
    st = record["stages"][names.index(stage)]
    folder = _stage_dir(root, st["run_dir"])
    path, _, meta = load_run_checkpoint(folder)  # verified: digest and metadata schema
    cfg = config_from_dict(meta["config"])
    sec = _section({k: v for k, v in record["convert"].items()})
    net = _build(cfg, sec, st["L"] if isinstance(st["L"], int) else sec.L,
                 *recorded_shapes(cfg, meta, path))
    set_L(net, st["L"])
    loaded = load_run(folder, checkpoint=path, model=StaticANN(net), device=device)
    return loaded.model.net, loaded.config, st


# ---- evaluation and the report -------------------------------------------------------------
def eval_batches(cfg, batch_size: int | None = None):
    """``[(x [B, ...], y)]`` of the run's test split (the ANN's input: time step 0)."""
    test_ds = build_datasets(cfg)[1]
    loader = torch.utils.data.DataLoader(test_ds, batch_size=batch_size or
                                         cfg.data.eval_batch_size, shuffle=False)
    return [(x.transpose(0, 1)[0], y) for x, y in loader]


def evaluate_stage(run, stage=None, naive_T: int = 64, dtype=torch.float32) -> dict:
    """ANN, PASCAL (temporal) and naive (T = 1..naive_T) results of one stage of a run."""
    net, cfg, st = load_stage(run, stage)
    batches = eval_batches(cfg)
    pascal = evaluate_snn(net, batches, "pascal", dtype=dtype)
    naive = evaluate_snn(net, batches, "naive", T=naive_T)
    return {"stage": st["name"], "L": st["L"], "sum_L": sum(st["L"].values()),
            "pascal": pascal, "naive": naive}


def write_report(run, out=None, naive_T: int = 64) -> Path:
    """``report.md``, ``report.json`` and plots (naive accuracy vs T against the ANN line and
    the PASCAL point; spikes and SOPs per layer; uniform L vs AL) for every stage of ``run``."""
    from ..plotting import layers_figure, naive_curve_figure, save, stages_figure

    root, record = stages(run)
    out = Path(out) if out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = [evaluate_stage(root, s["name"], naive_T) for s in record["stages"]]
    (out / "report.json").write_text(json.dumps(
        [{k: v for k, v in r.items()} for r in results], indent=2, default=str))
    figs = [save(naive_curve_figure(results), out / "naive_vs_T.png", dpi=120),
            save(layers_figure(results), out / "layers.png", dpi=120)]
    if len(results) > 1:
        figs.append(save(stages_figure(results), out / "uniform_vs_al.png", dpi=120))
    lines = [f"# Conversion report: {root.name}", "",
             f"Net `{record['net']}`; test split of the run's dataset. PASCAL runs the "
             "temporal simulation (IF neurons, float32); naive mode is IF conversion with "
             "threshold lambda, v(0) = lambda/2, soft reset, read out as the running mean.", "",
             "| stage | levels L | sum L | ANN acc | PASCAL acc | PASCAL = ANN predictions | "
             "count mismatches vs folded / trained ANN | max abs logit diff (folded / trained "
             "ANN) | "
             "PASCAL time steps | spikes / sample | naive acc T=1 / 2 / 4 / 8 / 16 / 64 | "
             "first naive T within 0.5 pp of the ANN | first naive T with all ANN predictions |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|"]
    for r in results:
        p, nv = r["pascal"], r["naive"]["acc_per_T"]
        pick = " / ".join(f"{100 * nv[t - 1]:.1f}" for t in (1, 2, 4, 8, 16, 64)
                          if t <= len(nv))
        reach = steps_to_reach(nv, p["ann_acc"] - 0.005)
        same = steps_to_reach(r["naive"]["agree_per_T"], 1.0)
        lines.append(f"| {r['stage']} | {list(r['L'].values())} | {r['sum_L']} | "
                     f"{100 * p['ann_acc']:.2f}% | {100 * p['snn_acc']:.2f}% | "
                     f"{100 * p['agreement']:.1f}% | {p['count_mismatches']} / "
                     f"{p['unfolded_count_mismatches']} of {p['neurons']:,} | "
                     f"{p['folded_logit_diff']:.2e} / "
                     f"{p['max_logit_diff']:.2e} | {p['time_steps']} | "
                     f"{p['report']['spikes']:,.0f} | {pick} | "
                     f"{reach if reach else f'> {len(nv)}'} | "
                     f"{same if same else f'> {len(nv)}'} |")
    lines += ["", "Two references: the BN-folded ANN (the network PASCAL is built from, same "
              "dtype) and the trained ANN (BN unfolded, float32). Counts are compared neuron by "
              "neuron; the predictions column is against the trained ANN. Folding rounds, so a "
              "pre-activation within rounding distance of a level boundary can change its count "
              "between the two ANNs, and the change propagates to later layers (a logit "
              "difference of one quantum or more). See docs/conversion.md, 'What is exact'."]
    for r in results:
        lines += ["", f"## Stage `{r['stage']}`: PASCAL per layer (per test sample)", "",
                  r["pascal"]["markdown"], "",
                  f"Naive at T = {len(r['naive']['acc_per_T'])}, per layer:", "",
                  r["naive"]["markdown"]]
    lines += [""] + [f"![{f.stem}]({f.name})" for f in figs]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out
