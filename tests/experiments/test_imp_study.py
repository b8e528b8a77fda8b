"""The IMP study on membra.train.fit: ordinary run folders, arms and seeds recorded, paired
data order, and the report built from those folders."""

import glob
import json

import pytest
import torch

from membra.experiments.imp_tables import aggregate, imp_report, is_static, load_runs
from membra.experiments.study import ARMS, arm_of, run_arm, study_config
from membra.train import Callback, evaluate_run
from membra.train.config import load_config
from membra.train.loop import learning_rate

TINY = ["train.epochs=1", "model.options.hidden=[16, 16]", "run.progress=false",
        "run.plots=false", "run.tensorboard=false"]
quiet = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("runs")
    for arm in ("baseline", "imp"):
        for seed in (0, 1):
            run_arm(f"configs/study/digits/{arm}.toml", seed=seed, out_dir=out,
                    overrides=TINY, **quiet)
    return out


@pytest.mark.parametrize("ds", ["digits", "digits-dvs", "mnist1d"])
def test_configs_cover_all_arms_and_are_run_configs(ds):
    assert len(glob.glob(f"configs/study/{ds}/*.toml")) == len(ARMS)
    for arm, spec in ARMS.items():
        cfg = load_config(f"configs/study/{ds}/{arm}.toml")        # strict: unknown keys fail
        assert arm_of(cfg.model.neuron_kwargs["init_potential"], cfg.train.loss) == arm
        assert cfg.train.loss == spec["loss"] and cfg.data.name == ds
        tagged = study_config(f"configs/study/{ds}/{arm}.toml", seed=3, out_dir="x")
        assert tagged.run.tags == {"study": "imp", "arm": arm, "seed": 3}
        assert tagged.run.name == f"{cfg.run.name}_s3" and tagged.run.seed == 3


def test_a_study_run_is_an_ordinary_run_folder(tiny_runs):
    run = tiny_runs / "digits_imp_s1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["test_acc_per_step"]) == 4
    st = summary["study"]
    assert st["arm"] == "imp" and st["seed"] == 1 and st["static_input"] is True
    assert st["sops"]["sops"] > 0 and st["in_shape"] == [64]
    assert "arm = \"imp\"" in (run / "config.toml").read_text()
    # membra eval reads it and gives the summary's numbers
    ev = evaluate_run(run, show=False)
    assert ev["test_acc_per_step"] == summary["test_acc_per_step"]
    assert ev["test_acc_mean"] == summary["test_acc_mean"]
    (r,) = load_runs([run])
    assert r["arm"] == "imp" and r["seed"] == 1
    assert set(r["init_potentials"]) == {"body.2", "body.5"}    # two LIF layers
    assert r["init_potentials"]["body.2"].shape == (1, 16)


class BatchLog(Callback):
    """A fingerprint of every training batch, in order."""

    def __init__(self):
        self.batches = []

    def on_fit_start(self, run, state):
        def pre(mod, args):
            if mod.training:
                x = args[0]
                self.batches.append((tuple(x.shape), float(x.double().sum()),
                                     float((x.double() * torch.arange(x.shape[1]).view(
                                         1, -1, *[1] * (x.dim() - 2))).sum())))
        run.model.register_forward_pre_hook(pre)


@pytest.mark.parametrize("ds,arms", [("digits", ("baseline", "imp", "lts", "imp_tet")),
                                     ("digits-dvs", ("imp_ls_tet", "lts"))])
def test_same_seed_same_batches_across_arms(tmp_path, ds, arms):
    pytest.importorskip("sklearn")
    logs = {}
    for arm in arms:
        for seed in (0, 5):
            log = BatchLog()
            run_arm(f"configs/study/{ds}/{arm}.toml", seed=seed, out_dir=tmp_path,
                    overrides=[*TINY, "train.epochs=2", "data.batch_size=96"],
                    callbacks=[log], **quiet)
            logs[arm, seed] = log.batches
    for seed in (0, 5):
        ref = logs[arms[0], seed]
        assert len(ref) > 4
        for arm in arms[1:]:
            assert logs[arm, seed] == ref, (arm, seed)
    assert logs[arms[0], 0] != logs[arms[0], 5]


@pytest.mark.parametrize("over,lr_key", [
    (["train.schedule=cosine", "train.min_lr=1e-4"], "cosine"),
    (["train.schedule=cosine", "train.warmup_epochs=1", "train.min_lr=1e-3"], "warmup"),
])
def test_the_study_honours_schedule_and_optimizer_keys(tmp_path, over, lr_key):
    pytest.importorskip("sklearn")
    s = run_arm("configs/study/digits/imp_lts.toml", seed=0, out_dir=tmp_path,
                overrides=[*TINY, "train.epochs=2", *over], **quiet)
    cfg = study_config("configs/study/digits/imp_lts.toml", seed=0,
                       overrides=[*TINY, "train.epochs=2", *over])
    steps = s["steps_done"]
    want = learning_rate(cfg.train, steps - 1, steps, steps // 2)
    assert s["lr"] == pytest.approx(want)
    assert s["lr"] != pytest.approx(cfg.train.lr)       # the old runner kept lr constant


@pytest.mark.parametrize("bad,match", [
    (["train.lr_typo=1"], "train.lr_typo"),
    (["train.loss=mse"], "train.loss"),
    (["model.neuron_kwargs.init_potential=0.3"], "not an IMP-study arm"),
    (["trian.epochs=1"], "trian"),
])
def test_bad_configs_are_refused_naming_the_key(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        run_arm("configs/study/digits/imp.toml", out_dir=tmp_path, overrides=bad, **quiet)
    assert not any(tmp_path.iterdir())


def test_finished_runs_are_skipped_and_other_configs_refused(tiny_runs):
    lines = []
    again = run_arm("configs/study/digits/imp.toml", seed=1, out_dir=tiny_runs,
                    overrides=TINY, log=lines.append)
    assert "already done" in lines[0] and again["study"]["arm"] == "imp"
    with pytest.raises(ValueError, match="another config"):
        run_arm("configs/study/digits/imp.toml", seed=1, out_dir=tiny_runs,
                overrides=[*TINY, "train.lr=0.01"], **quiet)


def test_aggregate_mean_std(tiny_runs):
    runs = load_runs([tiny_runs])
    agg = aggregate(runs)["digits"]
    assert list(agg) == ["baseline", "imp"] and agg["imp"]["n"] == 2
    acc = torch.tensor([r["per_step_accuracy"][0] for r in runs if r["arm"] == "imp"],
                       dtype=torch.float64)
    mean, std = agg["imp"]["per_step"][0]
    assert mean == pytest.approx(acc.mean().item())
    assert std == pytest.approx(acc.std().item())


def test_report_markdown_and_figures(tiny_runs, tmp_path):
    path = imp_report([tiny_runs], tmp_path / "rep")
    md = path.read_text()
    assert "## digits" in md and "| baseline | 2 |" in md and "| imp | 2 |" in md
    assert "Step-1 accuracy, learnable V_0" in md and "Spec criterion" in md
    assert "Equally-sized ANN" in md
    assert (tmp_path / "rep" / "curves_digits.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "imp_hist_digits.png").stat().st_size > 1000


def write_run(folder, dataset, arm, seed, step1, static=None):
    """A finished run folder as fit leaves it (summary.json + config.toml), no checkpoint."""
    spec = ARMS[arm]
    folder.mkdir(parents=True)
    init = '"learnable"' if spec["init_potential"] == "learnable" else "0.0"
    (folder / "config.toml").write_text(
        f'[run]\nname = "{arm}"\nseed = {seed}\ntags = {{ arm = "{arm}" }}\n'
        f'[data]\nname = "{dataset}"\n[model]\nneuron_kwargs = {{ init_potential = {init} }}\n'
        f'[train]\nloss = "{spec["loss"]}"\n')
    summary = {"status": "completed", "test_acc_per_step": [step1, 0.9], "test_acc_mean": 0.9,
               "test_acc_last": 0.9}
    if static is not None:
        summary["study"] = {"static_input": static}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_step1_criterion_only_for_static_input(tmp_path):
    # the spec's ">= 4 points at step 1" criterion is about a static image repeated T times;
    # event and sequence sets get the paired differences but no criterion line
    for arm, step1 in (("baseline", 0.80), ("lts", 0.78), ("imp", 0.90), ("imp_lts", 0.88)):
        write_run(tmp_path / "runs" / f"digits_{arm}", "digits", arm, 0, step1)
        write_run(tmp_path / "runs" / f"dvs_{arm}", "digits-dvs", arm, 0, step1, static=False)
        write_run(tmp_path / "runs" / f"rate_{arm}", "digits", arm, 0, step1, static=False)
    runs = load_runs([tmp_path / "runs"])
    agg = aggregate(runs)
    assert agg["digits"]["imp"]["static"] is False          # one rate-coded run is mixed in
    md = imp_report([tmp_path / "runs" / f"digits_{a}" for a in ("baseline", "lts", "imp",
                                                                 "imp_lts")],
                    tmp_path / "a", plots=False).read_text()
    assert "Spec criterion for a static input" in md
    assert "imp_lts 88.0% − best zero-start arm baseline 80.0% = **+8.0 points** (met)" in md
    md = imp_report([tmp_path / "runs" / f"dvs_{a}" for a in ("baseline", "lts", "imp",
                                                              "imp_lts")],
                    tmp_path / "b", plots=False).read_text()
    assert "## digits-dvs" in md and "imp − baseline (mean CE) = **+10.0**" in md
    assert "Spec criterion" not in md


def test_is_static():
    assert is_static({"dataset": "digits"}) and is_static({"dataset": "cifar10"})
    assert not is_static({"dataset": "digits", "encoding": "rate"})
    assert not is_static({"dataset": "mnist1d"}) and not is_static({"dataset": "digits-dvs"})
    assert not is_static({"dataset": "digits", "static_input": False})
    assert is_static({"dataset": "my-set", "static_input": True})


def test_cli_run_study_and_report_imp(tiny_runs, tmp_path):
    from typer.testing import CliRunner

    from membra.cli import app

    res = CliRunner().invoke(app, ["report", "run-study", "configs/study/digits/lts.toml",
                                   "--seeds", "2", "--out", str(tmp_path / "runs"),
                                   *[a for o in TINY for a in ("--set", o)]])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "digits_lts_s2" / "summary.json").is_file()
    res = CliRunner().invoke(app, ["report", "imp", str(tiny_runs), str(tmp_path / "runs"),
                                   "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "mean readout" in res.output and "| lts | 1 |" in res.output


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_runs([tmp_path / "nope"])
    with pytest.raises(ValueError, match="no run folders"):
        load_runs([tmp_path])
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        run_arm(tmp_path / "missing.toml", out_dir=tmp_path, **quiet)
