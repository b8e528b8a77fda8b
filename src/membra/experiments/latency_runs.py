"""The run folders and the cache of ``membra convert latency``: which trained run serves a
case (finished, or interrupted and resumable), whether it still matches its config and its
record, and whether a cached case can be reused. Everything a user can get wrong here (a bad
depth, a config typo, an edited run folder or cached file, a shorter ``--T-max``) is a
``ValueError`` naming the file, or a re-evaluation, before or instead of a wrong report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .qcfs_pascal import read_json

__all__ = ["runs_of", "run_folders", "finished_run", "interrupted_run", "trained", "statuses",
           "check_same_config", "check_depths", "check_builds", "read_case", "stale_reason",
           "check_trained_accuracy"]


def check_trained_accuracy(ann_acc: float, st: dict, n: int, run) -> None:
    """The ANN rebuilt from the run must score what the stage recorded when it was trained
    (``test_acc`` in ``convert.json``), up to one of the ``n`` test samples (a rounding tie
    at another batch size): the levels are not in the checkpoint, so an edited ``L`` shows
    only here. Otherwise a ``ValueError`` naming the run and both accuracies."""
    rec = st.get("test_acc")
    if isinstance(rec, (int, float)) and abs(ann_acc - rec) * n > 1 + 1e-6:
        raise ValueError(
            f"stage {st['name']!r} of {str(run)!r} scores {100 * ann_acc:.2f}% on the test "
            f"split, but recorded {100 * rec:.2f}% when it was trained: its convert.json "
            f"levels {st['L']} are not the ones it was trained with (edited?); retrain it "
            "rather than edit the record")


def runs_of(cfg, sec, depth: int):
    """The two training runs of one (config, depth): ``(name, section, stages)``."""
    opts = {**sec.options, "depth": depth}
    return [(f"d{depth}_L2", dataclasses.replace(sec, options=opts, L=2, al=False),
             {"uniform": "L = 2"}),
            (f"d{depth}_L4", dataclasses.replace(sec, options=opts, L=4, al=True),
             {"uniform": "L = 4", "al": "AL"})]


def run_folders(run_dir: Path) -> list[Path]:
    """``run_dir`` and the folders ``membra.train.fit`` puts beside it when it already holds a
    run (``<name>-1``, ``<name>-2``, ...), in that order; only those that exist."""
    siblings = [d for d in run_dir.parent.glob(f"{run_dir.name}-*")
                if d.name[len(run_dir.name) + 1:].isdigit()]
    siblings.sort(key=lambda d: int(d.name[len(run_dir.name) + 1:]))
    return [d for d in (run_dir, *siblings) if d.is_dir()]


def finished_run(run_dir: Path, stages) -> Path | None:
    """The first of :func:`run_folders` holding a finished conversion run with all
    ``stages``; None if none has them."""
    return next((d for d in run_folders(run_dir) if trained(d, stages)), None)


def interrupted_run(run_dir: Path) -> Path | None:
    """The last of :func:`run_folders` whose stage 1 stopped early and left a checkpoint
    (``checkpoints/latest``) to resume from: no ``convert.json`` (the process was killed) or
    a ``uniform`` stage with status ``interrupted``; None if none did."""
    return next((d for d in reversed(run_folders(run_dir))
                 if (d / "checkpoints" / "latest").exists()
                 and statuses(d).get("uniform", "interrupted") == "interrupted"), None)


def trained(run_dir: Path, stages) -> bool:
    """Whether ``run_dir`` holds a finished conversion run with all ``stages``."""
    done = {name for name, st in statuses(run_dir).items() if st == "completed"}
    return set(stages) <= done


def statuses(run_dir: Path) -> dict:
    """``{stage: status}`` of the conversion run in ``run_dir`` (its ``convert.json``,
    checked); empty when there is none."""
    from .qcfs_pascal import stages as read_stages

    if not (run_dir / "convert.json").is_file():
        return {}
    return {s["name"]: s.get("status") for s in read_stages(run_dir)[1]["stages"]}


def check_same_config(run: Path, path, cfg, sec) -> None:
    """A finished run is reused only for the config it was trained with: its ``convert.json``
    ``convert`` section and its ``config.toml`` must be what ``path`` gives now, up to the
    keys that do not change what is trained (``RESUME_FREE`` but ``train.epochs`` and
    ``train.max_steps``: the run's name, folder, threads, display, checkpoint cadence, ...);
    otherwise a ``ValueError`` naming the run, the config and the keys that differ."""
    from ..train import load_config
    from ..train.build import RESUME_FREE
    from ..train.config import config_to_dict
    from .qcfs_pascal import stages as read_stages

    free = RESUME_FREE - {"train.epochs", "train.max_steps"}
    a = _keys(config_to_dict(load_config(run / "config.toml")))
    b = _keys(config_to_dict(cfg))
    a.update({f"convert.{k}": v for k, v in read_stages(run)[1]["convert"].items()})
    b.update({f"convert.{k}": v for k, v in
              json.loads(json.dumps(dataclasses.asdict(sec))).items()})
    diff = [f"{k}: run {a.get(k)!r} vs config {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in free and k != "run.tags" and a.get(k) != b.get(k)]
    if diff:
        raise ValueError(f"run {str(run)!r} was trained with another config than {str(path)!r} "
                         f"gives now ({'; '.join(diff)}); move the run away (or pass another "
                         "--runs folder) to retrain it, or restore the config")


def _keys(d: dict) -> dict:
    """``{"section.key": value}`` of a config dict (a table inside a key, such as
    ``data.options``, stays one value)."""
    return {f"{sec}.{k}" if isinstance(sub, dict) else sec: v
            for sec, sub in d.items() for k, v in (sub.items() if isinstance(sub, dict)
                                                   else [(None, sub)])}


def check_depths(depths) -> tuple[int, ...]:
    """``depths`` as a tuple of distinct ints >= 2 (QCFS layers of a net); anything else is a
    ``ValueError`` naming the value."""
    depths = tuple(depths)
    bad = [d for d in depths if isinstance(d, bool) or not isinstance(d, int) or d < 2]
    if not depths or bad:
        raise ValueError(f"depths must be ints >= 2 (QCFS layers of the net), got "
                         f"{list(depths)!r}")
    if len(set(depths)) != len(depths):
        raise ValueError(f"depths {list(depths)!r} name a depth twice")
    return depths


def check_builds(cfg, sec, path, depth: int) -> None:
    """Build the net of ``sec`` at ``depth`` on the data of ``cfg`` (a few milliseconds), so a
    config that cannot train fails before any other case spends hours training."""
    from ..train.engine import build_datasets
    from .qcfs_pascal import _build

    info = build_datasets(cfg)[1].info
    s = runs_of(cfg, sec, depth)[0][1]
    try:
        _build(cfg, s, s.L, info.in_shape, info.num_classes)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: the latency benchmark cannot build net {sec.net!r} at "
                         f"depth {depth}: {err}") from None


#: the keys a cached case must hold (what the report reads)
_CASE_KEYS = {"dataset": str, "depth": int, "setting": str, "T_max": int, "ann_acc": float,
              "counts": dict, "pascal": dict, "naive": dict}
_CASE_PARTS = {"counts": ("levels", "total", "max_L", "effective"),
               "pascal": ("acc", "time_steps", "spikes", "sops"),
               "naive": ("acc_per_T", "agree_per_T", "thresholds", "at")}


def read_case(key: Path, depth: int, setting: str) -> dict:
    """A cached case of the benchmark, checked: readable JSON with every key the report reads,
    for this ``depth`` and level ``setting``, and ``T_max`` naive steps in its curves; anything
    else is a ``ValueError`` naming the file."""
    def bad(what: str):
        return ValueError(f"cached latency case {str(key)!r} {what}; it is written by `membra "
                          "convert latency`: delete it to evaluate the case again")

    res = read_json(key, bad)
    if not isinstance(res, dict):
        raise bad(f"holds a {type(res).__name__}, not a case")
    for k, want in _CASE_KEYS.items():
        v = res.get(k)
        ok = (isinstance(v, (int, float)) if want is float else isinstance(v, want))
        if isinstance(v, bool) or not ok:
            raise bad(f"has {k}={v!r}; expected a {want.__name__}")
        if k in _CASE_PARTS and not set(_CASE_PARTS[k]) <= set(v):
            raise bad(f"lacks {k}.{sorted(set(_CASE_PARTS[k]) - set(v))[0]}")
    if (res["depth"], res["setting"]) != (depth, setting):
        raise bad(f"is the case depth {res['depth']}, {res['setting']!r}, not depth {depth}, "
                  f"{setting!r}")
    curves = res["naive"]["acc_per_T"], res["naive"]["agree_per_T"]
    if not all(isinstance(c, list) and len(c) == res["T_max"] for c in curves):
        raise bad(f"has naive curves that do not run to its T_max = {res['T_max']}")
    return res


def stale_reason(res: dict, run: Path, stage: str, T_max: int) -> str | None:
    """Why the cached case ``res`` must be evaluated again for ``stage`` of ``run``: it ran
    naive conversion to a smaller ``T_max``, or its ANN accuracy is not the one the stage
    recorded when it was trained (the case came from another run), up to 0.15 points;
    None if it holds."""
    from .qcfs_pascal import stages as read_stages

    if res["T_max"] < T_max:
        return f"ran to T = {res['T_max']}"
    rec = {s["name"]: s for s in read_stages(run)[1]["stages"]}[stage].get("test_acc")
    if isinstance(rec, (int, float)) and abs(res["ann_acc"] - rec) > 0.0015:
        return (f"has ANN accuracy {100 * res['ann_acc']:.2f}%, the run recorded "
                f"{100 * rec:.2f}%")
    return None
