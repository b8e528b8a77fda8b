"""The plumbing of ``membra convert latency`` as a user meets it: bad depths and broken configs
refused before hours of training, an interrupted run resumed, a cached case run to a shorter
T re-evaluated, and a tampered cached case named. Training and simulation are replaced by
fakes that record what they were asked (the real ones are covered by the conversion tests)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

import membra.experiments.latency as lat
import membra.experiments.latency_runs as lruns
import membra.experiments.qcfs_pascal as qp

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "convert_latency_mnist1d.toml"
STEM = CONFIG.stem


class Trained(Exception):
    """Raised by the fake trainer: the benchmark started to train."""


@pytest.fixture
def calls(monkeypatch):
    """Replace ``train_convert`` and ``run_case`` by recorders; training raises
    :class:`Trained`, evaluation returns a case run to the asked ``T_max``."""
    seen = {"train": [], "eval": []}

    def train_convert(cfg, sec, *, run_dir=None, **kw):
        seen["train"].append({"run_dir": run_dir, "depth": sec.options["depth"], **kw})
        raise Trained(str(run_dir))

    def run_case(run, stage, T_max=lat.T_MAX, batch_size=50):
        seen["eval"].append((Path(run).name, stage, T_max))
        return _case(7, "L = 2", T_max)

    monkeypatch.setattr(qp, "train_convert", train_convert)
    monkeypatch.setattr(lat, "run_case", run_case)
    return seen


def _case(depth, setting, T_max):
    """A cached case with every key the report reads."""
    return {"dataset": "mnist1d-static", "depth": depth, "setting": setting, "T_max": T_max,
            "ann_acc": 0.9,
            "counts": {"levels": [2, 2], "fan_ins": [3, 24], "sum_L": 4, "max_L": 2,
                       "total": 5, "effective": 3.0},
            "pascal": {"acc": 0.9, "agreement": 1.0, "time_steps": 5, "spikes": 1.0,
                       "sops": 2.0},
            "naive": {"acc_per_T": [0.9] * T_max, "agree_per_T": [0.9] * T_max,
                      "thresholds": {"acc-0.5": 1, "acc-0.1": 1, "agree-100": None},
                      "at": {}}}


def _finished(folder: Path, cfg, sec) -> None:
    """A conversion run folder of ``cfg`` / ``sec`` whose stages all completed (no weights:
    evaluation is faked)."""
    from membra.train import dump_config

    folder.mkdir(parents=True)
    st = [{"name": "uniform", "L": 2, "run_dir": ".", "test_acc": 0.9, "status": "completed"}]
    if sec.al:
        st.append({"name": "al", "L": {"a": 2}, "run_dir": "al", "test_acc": 0.9,
                   "status": "completed"})
    (folder / "config.toml").write_text(dump_config(cfg))
    (folder / "convert.json").write_text(json.dumps({
        "net": sec.net, "convert": dataclasses.asdict(sec), "stages": st}))


def _all_finished(runs: Path, depth: int = 7, config=CONFIG) -> None:
    """Both runs of ``config`` at ``depth``, finished."""
    cfg, sec = qp.load_convert_config(config)
    for name, s, _ in lruns.runs_of(cfg, sec, depth):
        _finished(runs / f"{Path(config).stem}_{name}", cfg, s)


# ---- refused before anything trains --------------------------------------------------------
@pytest.mark.parametrize("depths", [(7, 1), (1,), (0,), (13, -3), (7, 7), (13, 7, 13),
                                    (7, 2.5), (True,), ("7",), ()])
def test_bad_depths_are_refused_before_anything_trains(depths, tmp_path, calls):
    with pytest.raises(ValueError, match="depth"):
        lat.latency_benchmark([CONFIG], depths=depths, runs_root=tmp_path / "runs",
                              cache=tmp_path / "cache", log=lambda s: None)
    assert calls["train"] == []


BROKEN = {  # what the second config says -> what the error names
    "key typo": (("al_epochs = 6", "al_epoch = 6"), "convert.al_epoch"),
    "option typo": (("{ width = 8 }", "{ widht = 8 }"), "widht"),
    "zero width": (("{ width = 8 }", "{ width = 0 }"), "width"),
    "net without depth": (('net = "vgg_small"', 'net = "digits_net"'), "digits_net"),
    "unknown net": (('net = "vgg_small"', 'net = "vgg_smal"'), "vgg_smal"),
    "T not 1": (("T = 1 ", "T = 4 "), "data.T"),
}


@pytest.mark.parametrize("what", sorted(BROKEN))
@pytest.mark.parametrize("depths", [(7,), (13, 7)])
def test_a_broken_second_config_is_refused_before_the_first_trains(what, depths, tmp_path,
                                                                   calls):
    (old, new), named = BROKEN[what]
    text = CONFIG.read_text()
    assert old in text
    bad = tmp_path / "broken.toml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(ValueError, match=named):
        lat.latency_benchmark([CONFIG, bad], depths=depths, runs_root=tmp_path / "runs",
                              cache=tmp_path / "cache", log=lambda s: None)
    assert calls["train"] == []


# ---- an interrupted run is resumed -------------------------------------------------------
def _checkpointed(folder: Path, status: str | None) -> None:
    """A run folder with ``checkpoints/latest``; ``status``: its convert.json's uniform
    stage status, or None for no convert.json (the process was killed)."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "latest").write_text("epoch_0003.safetensors")
    if status is not None:
        (folder / "convert.json").write_text(json.dumps({"net": "vgg_small", "convert": {},
            "stages": [{"name": "uniform", "L": 2, "run_dir": ".", "status": status}]}))


@pytest.mark.parametrize("layout,want", [
    ({"": None}, ""),                                  # killed in place
    ({"-1": None}, "-1"),                              # fit had moved it aside, then killed
    ({"": None, "-1": None}, "-1"),                    # the latest of two
    ({"": None, "-2": None, "-10": None}, "-10"),      # numeric order
    ({"": "interrupted"}, ""),                          # stopped (Ctrl-C): convert.json says so
    ({"": "interrupted", "-1": "nan_loss"}, ""),       # a diverged run is not resumed
    ({"": "nan_loss"}, None),
    ({"-x": None, "-1b": None}, None),                 # not fit's siblings
])
def test_an_interrupted_stage_one_is_resumed_in_its_folder(layout, want, tmp_path, calls):
    runs = tmp_path / "runs"
    base = runs / f"{STEM}_d7_L2"
    for suffix, status in layout.items():
        _checkpointed(runs / f"{base.name}{suffix}", status)
    with pytest.raises(Trained):
        lat.latency_benchmark([CONFIG], depths=(7,), runs_root=runs, cache=tmp_path / "cache",
                              log=lambda s: None)
    (call,) = calls["train"]
    assert call["run_dir"] == base
    assert call["resume"] == (None if want is None else runs / f"{base.name}{want}")


# ---- a cached case run to a shorter T ---------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_a_case_cached_to_a_shorter_T_max_is_evaluated_again(seed, tmp_path, calls):
    rng = random.Random(seed)
    T_max = rng.choice([5, 17, 64, 256])
    cached = {label: rng.choice([1, 3, T_max - 1, T_max, T_max + 7])
              for label in ("L2", "L4", "AL")}
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    cache.mkdir()
    _all_finished(runs)
    settings = {"L2": "L = 2", "L4": "L = 4", "AL": "AL"}
    for label, t in cached.items():
        (cache / f"{STEM}_d7_{label}.json").write_text(json.dumps(_case(7, settings[label], t)))
    out = lat.latency_benchmark([CONFIG], depths=(7,), runs_root=runs, cache=cache,
                                T_max=T_max, log=lambda s: None)
    stage = {"L2": (f"{STEM}_d7_L2", "uniform"), "L4": (f"{STEM}_d7_L4", "uniform"),
             "AL": (f"{STEM}_d7_L4", "al")}
    want = [(*stage[k], T_max) for k, t in cached.items() if t < T_max]
    assert calls["eval"] == want
    assert [r["T_max"] for r in out] == [max(t, T_max) for t in cached.values()]
    for label, t in cached.items():       # the cache holds the longer run
        assert json.loads((cache / f"{STEM}_d7_{label}.json").read_text())["T_max"] == max(
            t, T_max)
    assert calls["train"] == []


def test_cached_only_reports_a_shorter_case_as_it_is(tmp_path, calls):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{STEM}_d7_L2.json").write_text(json.dumps(_case(7, "L = 2", 64)))
    out = lat.latency_benchmark([CONFIG], depths=(7,), runs_root=tmp_path / "runs",
                                cache=cache, T_max=256, log=lambda s: None, train=False)
    assert [r["T_max"] for r in out] == [64] and calls["eval"] == []


# ---- a tampered cached case is named -----------------------------------------------------
def _drop(path):
    def f(case):
        d = case
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
        return case
    return f


TAMPERED = {
    "not utf-8": lambda c: b"\xff\xfe\x00{",
    "truncated": lambda c: json.dumps(c)[:40],
    "empty": lambda c: "",
    "a list": lambda c: json.dumps([c]),
    "deep nesting": lambda c: "[" * 100000 + "]" * 100000,
    "no counts": _drop(["counts"]),
    "no counts.total": _drop(["counts", "total"]),
    "no pascal.sops": _drop(["pascal", "sops"]),
    "no naive.thresholds": _drop(["naive", "thresholds"]),
    "T_max a string": lambda c: {**c, "T_max": "256"},
    "ann_acc a bool": lambda c: {**c, "ann_acc": True},
    "another depth": lambda c: {**c, "depth": 13},
    "another setting": lambda c: {**c, "setting": "AL"},
    "curve shorter than T_max": lambda c: {**c, "T_max": 9},
}


@pytest.mark.parametrize("what", sorted(TAMPERED))
@pytest.mark.parametrize("train", [False, True])
def test_a_tampered_cached_case_is_named(what, train, tmp_path, calls):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    cache.mkdir()
    _all_finished(runs)
    key = cache / f"{STEM}_d7_L2.json"
    body = TAMPERED[what](_case(7, "L = 2", 8))
    if isinstance(body, dict):
        body = json.dumps(body)
    (key.write_bytes if isinstance(body, bytes) else key.write_text)(body)
    with pytest.raises(ValueError, match="cached latency case .*" + key.name):
        lat.latency_benchmark([CONFIG], depths=(7,), runs_root=runs, cache=cache, T_max=8,
                              log=lambda s: None, train=train)


# ---- the real resume: stage 1 killed after an epoch, then continued ---------------------
@pytest.mark.parametrize("stop_after", [1, 2])
def test_train_convert_resumes_a_killed_stage_one_bit_identically(stop_after, tmp_path):
    """A stage 1 stopped after ``stop_after`` of 3 epochs (no convert.json, as when the
    process is killed) and resumed by ``train_convert(resume=...)`` ends in the same folder
    with the same weights and history as an uninterrupted run."""
    from membra.train import fit
    from membra.train.checkpoint import load_checkpoint, resolve_checkpoint

    cfg, sec = qp.load_convert_config(
        ROOT / "configs" / "convert_digits.toml",
        ["train.epochs=3", "run.progress=false", "run.tensorboard=false", "convert.al=false",
         "convert.L=2"])
    straight = qp.train_convert(cfg, sec, run_dir=tmp_path / "straight", log=lambda s: None)
    info = qp.build_datasets(cfg)[1].info
    net = qp._build(cfg, sec, sec.L, info.in_shape, info.num_classes)
    first = fit(cfg, run_dir=tmp_path / "split", model=qp.StaticANN(net),
                callbacks=[lambda ev, i: ev == "epoch_end" and i["epoch"] == stop_after])
    assert first["status"] == "interrupted"
    assert not (tmp_path / "split" / "convert.json").exists()
    resumed = qp.train_convert(cfg, sec, run_dir=tmp_path / "other", resume=tmp_path / "split",
                               log=lambda s: None)
    assert resumed["run_dir"] == str(tmp_path / "split") and not (tmp_path / "other").exists()
    assert resumed["stages"][0]["status"] == "completed"
    assert resumed["stages"][0]["test_acc"] == straight["stages"][0]["test_acc"]
    a, _ = load_checkpoint(resolve_checkpoint(tmp_path / "straight"))
    b, _ = load_checkpoint(resolve_checkpoint(tmp_path / "split"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert lruns.interrupted_run(tmp_path / "split") is None
    assert lruns.finished_run(tmp_path / "split", {"uniform": "L = 2"}) == tmp_path / "split"


# ---- an edited run folder: levels that the weights were not trained with -----------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished two-epoch digits conversion run at L = 2 (stage 1 only)."""
    cfg, sec = qp.load_convert_config(
        ROOT / "configs" / "convert_digits.toml",
        ["train.epochs=2", "run.progress=false", "run.tensorboard=false", "convert.al=false",
         "convert.L=2"])
    root = tmp_path_factory.mktemp("trained") / "run"
    return Path(qp.train_convert(cfg, sec, run_dir=root, log=lambda s: None)["run_dir"])


def _reference_acc(run) -> int:
    """Test-split hits of the run's ANN at its convert.json levels: a plain loop."""
    net, cfg, _ = qp.load_stage(run, "uniform")
    with torch.no_grad():
        return sum(int((net(x).argmax(-1) == y).sum()) for x, y in qp.eval_batches(cfg, 97))


@pytest.mark.parametrize("seed", range(5))
def test_levels_edited_in_convert_json_are_caught(seed, trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    rec = json.loads((run / "convert.json").read_text())
    st = rec["stages"][0]
    recorded = round(st["test_acc"] * 597)
    assert _reference_acc(run) == recorded            # unedited: the record holds
    rng = random.Random(seed)
    st["L"] = {k: rng.choice([1, 2, 3, 5, 8]) for k in st["L"]} if seed else 3
    (run / "convert.json").write_text(json.dumps(rec))
    hits = _reference_acc(run)
    if abs(hits - recorded) > 1:
        with pytest.raises(ValueError, match="convert.json levels .*not the ones"):
            lat.run_case(run, "uniform", T_max=2)
    else:                                             # an edit that changes nothing visible
        assert lat.run_case(run, "uniform", T_max=2)["ann_acc"] == hits / 597


# ---- a run or a cached case from another config -------------------------------------------
EDITS = {  # config text edit -> the key named, or None for an edit that changes no result
    "lr": (("lr = 3e-3", "lr = 1e-3"), "train.lr"),
    "epochs": (("epochs = 20 ", "epochs = 25 "), "train.epochs"),
    "width": (("{ width = 8 }", "{ width = 6 }"), "convert.options"),
    "al_tau": (("al_tau = 0.1", "al_tau = 0.2"), "convert.al_tau"),
    "seed": (("seed = 0", "seed = 1"), "run.seed"),
    "batch": (("batch_size = 64", "batch_size = 32"), "data.batch_size"),
    "threads": (("threads = 1", "threads = 2"), None),
    "plots": (("plots = false", "plots = true"), None),
}


@pytest.mark.parametrize("what", sorted(EDITS))
def test_a_run_trained_under_another_config_is_not_reused(what, tmp_path, calls):
    (old, new), key = EDITS[what]
    runs = tmp_path / "runs"
    _all_finished(runs)
    text = CONFIG.read_text()
    assert old in text
    edited = tmp_path / "cfg" / CONFIG.name
    edited.parent.mkdir()
    edited.write_text(text.replace(old, new))
    go = lambda: lat.latency_benchmark([edited], depths=(7,), runs_root=runs,  # noqa: E731
                                       cache=tmp_path / "cache", T_max=4, log=lambda s: None)
    if key is None:
        assert len(go()) == 3 and len(calls["eval"]) == 3
    else:
        with pytest.raises(ValueError, match=f"trained with another config.*{key}"):
            go()
        assert calls["eval"] == []
    assert calls["train"] == []


@pytest.mark.parametrize("ann_acc,again", [(0.9, False), (0.9014, False), (0.8986, False),
                                           (0.9016, True), (0.8, True), (1.0, True)])
def test_a_cached_case_from_another_run_is_evaluated_again(ann_acc, again, tmp_path, calls):
    """The runs recorded 90.0 % when trained; a cached case whose ANN scored otherwise (by
    more than 0.15 points) came from another run."""
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    cache.mkdir()
    _all_finished(runs)
    for label, setting in (("L2", "L = 2"), ("L4", "L = 4"), ("AL", "AL")):
        case = {**_case(7, setting, 4), "ann_acc": ann_acc if label == "L4" else 0.9}
        (cache / f"{STEM}_d7_{label}.json").write_text(json.dumps(case))
    lat.latency_benchmark([CONFIG], depths=(7,), runs_root=runs, cache=cache, T_max=4,
                          log=lambda s: None)
    assert calls["eval"] == ([(f"{STEM}_d7_L4", "uniform", 4)] if again else [])


# ---- what the user sees -------------------------------------------------------------------
@pytest.mark.parametrize("depths,says", [("7,1", "ints >= 2"), ("7,7", "twice"),
                                         ("0", "ints >= 2"), ("13,-3", "ints >= 2"),
                                         ("x", "comma-separated ints"),
                                         ("7,,13", "comma-separated ints")])
def test_cli_refuses_bad_depths_in_one_line_and_writes_nothing(depths, says, tmp_path, calls):
    from typer.testing import CliRunner

    from membra.cli import app
    r = CliRunner().invoke(app, ["convert", "latency", str(CONFIG), "--depths", depths,
                                 "--runs", str(tmp_path / "runs"), "--out",
                                 str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.strip()]
    assert line.startswith("error: ") and says in line
    assert calls["train"] == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("T_max", [4, 9])
def test_cached_only_needs_no_run_folders(T_max, tmp_path, calls):
    """``--cached-only`` on a checkout that has the committed cases but no ``runs/``."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for label, setting in (("L2", "L = 2"), ("L4", "L = 4"), ("AL", "AL")):
        (cache / f"{STEM}_d7_{label}.json").write_text(json.dumps(_case(7, setting, T_max)))
    out = lat.latency_benchmark([CONFIG], depths=(7,), runs_root=tmp_path / "runs",
                                cache=cache, T_max=4, log=lambda s: None, train=False)
    assert [r["setting"] for r in out] == ["L = 2", "L = 4", "AL"]
    assert calls == {"train": [], "eval": []} and not (tmp_path / "runs").exists()
