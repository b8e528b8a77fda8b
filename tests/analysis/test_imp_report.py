"""The IMP-study runner and report builder on two tiny runs."""

import json

import pytest
import torch

from membra.analysis.imp_report import aggregate, arm_of, imp_report, is_static, load_runs
from membra.analysis.study import ARMS, build_model, load_study_config, run_arm


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("runs")
    for arm in ("baseline", "imp"):
        cfg = load_study_config(f"configs/study/digits/{arm}.toml",
                                {"train.epochs": 1, "model.options": {"hidden": [16, 16]}})
        for seed in (0, 1):
            run_arm(cfg, seed=seed, out_dir=out, log=lambda *_: None)
    return out


def test_configs_cover_all_arms():
    for ds in ("digits", "digits-dvs", "mnist1d"):
        for arm, spec in ARMS.items():
            cfg = load_study_config(f"configs/study/{ds}/{arm}.toml")
            m = {"init_potential": cfg["model"]["neuron_kwargs"]["init_potential"],
                 "loss": cfg["train"]["loss"]}
            assert arm_of(m) == arm and m["loss"] == spec["loss"]
            assert cfg["data"]["name"] == ds


def test_runner_writes_run_folder(tiny_runs):
    run = tiny_runs / "digits_imp_s1"
    m = json.loads((run / "metrics.json").read_text())
    assert m["seed"] == 1 and len(m["per_step_accuracy"]) == 4
    assert 0.0 <= m["acc_mean"] <= 1.0 and m["sops"]["sops"] > 0
    assert m["static_input"] is True                 # digits, direct encoding
    runs = load_runs([run])
    assert set(runs[0]["init_potentials"]) == {"body.2", "body.5"}    # two LIF layers
    assert runs[0]["init_potentials"]["body.2"].shape == (1, 16)


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


def write_metrics(folder, dataset, arm, seed, step1, **extra):
    spec = ARMS[arm]
    folder.mkdir(parents=True)
    m = {"dataset": dataset, "seed": seed, "loss": spec["loss"],
         "init_potential": spec["init_potential"], "per_step_accuracy": [step1, 0.9],
         "acc_mean": 0.9, "acc_last": 0.9, **extra}
    (folder / "metrics.json").write_text(json.dumps(m))


def test_step1_criterion_only_for_static_input(tmp_path):
    # the spec's ">= 4 points at step 1" criterion is about a static image repeated T times;
    # event and sequence sets get the paired differences but no criterion line
    for arm, step1 in (("baseline", 0.80), ("lts", 0.78), ("imp", 0.90), ("imp_lts", 0.88)):
        write_metrics(tmp_path / "runs" / f"digits_{arm}", "digits", arm, 0, step1)
        write_metrics(tmp_path / "runs" / f"dvs_{arm}", "digits-dvs", arm, 0, step1,
                      static_input=False)
        write_metrics(tmp_path / "runs" / f"rate_{arm}", "digits", arm, 0, step1,
                      static_input=False)
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


def test_cli_report_imp(tiny_runs, tmp_path):
    from typer.testing import CliRunner

    from membra.cli import app

    res = CliRunner().invoke(app, ["report", "imp", str(tiny_runs), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "mean readout" in res.output


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_runs([tmp_path / "nope"])
    with pytest.raises(ValueError, match="no run folders"):
        load_runs([tmp_path])
    (tmp_path / "bad.toml").write_text("[trian]\nepochs = 1\n")
    with pytest.raises(ValueError, match="unknown config section 'trian'"):
        load_study_config(tmp_path / "bad.toml")
    (tmp_path / "bad2.toml").write_text("[train]\nloss = 'mse'\n")
    with pytest.raises(ValueError, match="train.loss='mse'"):
        load_study_config(tmp_path / "bad2.toml")
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_study_config(tmp_path / "missing.toml")


def test_build_model_shapes():
    cfg = load_study_config("configs/study/digits/imp.toml")
    net = build_model((2, 4, 4), 5, cfg)
    assert net(torch.rand(3, 2, 2, 4, 4)).shape == (3, 2, 5)
    assert net.body[-2].learnable_potential


def test_reads_train_run_folders(tmp_path):
    # the layout `membra train` leaves: summary.json, config.toml, checkpoints/*.safetensors
    from safetensors.torch import save_file

    run = tmp_path / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text('[run]\nname = "x"\nseed = 2\n[data]\nname = "digits"\n'
                                     '[model]\nneuron_kwargs = { init_potential = "learnable" }'
                                     '\n[train]\nloss = "lts_ce"\n')
    (run / "summary.json").write_text(json.dumps({"test_acc_per_step": [0.5, 0.7],
                                                  "test_acc_mean": 0.8, "test_acc_last": 0.7}))
    save_file({"model.2.init_potential": torch.full((1, 5), 0.5),
               "model.0.weight": torch.ones(5, 3)},
              str(run / "checkpoints" / "epoch_0001.safetensors"))
    (r,) = load_runs([tmp_path])
    assert r["arm"] == "imp_lts" and r["seed"] == 2 and r["per_step_accuracy"] == [0.5, 0.7]
    assert list(r["init_potentials"]) == ["2"]


def test_study_configs_are_membra_train_configs():
    # the same files run through the full engine: `membra train configs/study/digits/imp.toml`
    import glob

    from membra.train.config import load_config

    files = sorted(glob.glob("configs/study/*/*.toml"))
    assert len(files) == 18
    for f in files:
        cfg = load_config(f)
        assert cfg.model.name == "mlp" and cfg.train.loss in ("mean_ce", "lts_ce", "tet",
                                                              "ls_tet")
