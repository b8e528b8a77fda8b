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


@pytest.mark.parametrize("ds", ["digits", "digits-dvs", "mnist1d", "mnist-5k", "mnist1d-static"])
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


def test_aggregate_mean_and_t_interval(tiny_runs):
    runs = load_runs([tiny_runs])
    agg = aggregate(runs)["digits T=4"]
    assert list(agg) == ["baseline", "imp"] and agg["imp"]["n"] == 2
    acc = torch.tensor([r["per_step_accuracy"][0] for r in runs if r["arm"] == "imp"],
                       dtype=torch.float64)
    iv = agg["imp"]["per_step"][0]
    assert iv.mean == pytest.approx(acc.mean().item())
    # n = 2: t(0.975, 1) = tan(0.475 pi) = 12.706
    assert iv.half == pytest.approx(12.7062047 * acc.std().item() / 2 ** 0.5, rel=1e-6)
    assert len(agg["imp"]["by_seed"]["curve"][0]) == 1       # one epoch in metrics.jsonl
    assert set(agg["imp"]["firing_rate"]) == {"body.2", "body.5"}


def test_report_markdown_and_figures(tiny_runs, tmp_path):
    path = imp_report([tiny_runs], tmp_path / "rep")
    md = path.read_text()
    assert "## digits T=4" in md and "| baseline | 2 |" in md and "| imp | 2 |" in md
    assert "**IMP raises step-1 accuracy (mean CE)** (imp − baseline" in md
    assert "Spec criterion" in md and "Equally-sized ANN" in md and "rate body.2" in md
    assert (tmp_path / "rep" / "curves_digits_T4.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "imp_hist_digits_T4.png").stat().st_size > 1000


def write_run(folder, dataset, arm, seed, step1, static=None, acc_mean=0.9, curve=(),
              T=2, rates=None, neuron=None):
    """A finished run folder as fit leaves it (summary.json + config.toml + metrics.jsonl
    with one row per epoch of ``curve``), no checkpoint; ``neuron`` sets ``model.neuron``."""
    spec = ARMS[arm]
    folder.mkdir(parents=True)
    init = '"learnable"' if spec["init_potential"] == "learnable" else "0.0"
    (folder / "config.toml").write_text(
        f'[run]\nname = "{arm}"\nseed = {seed}\ntags = {{ arm = "{arm}" }}\n'
        f'[data]\nname = "{dataset}"\n[model]\nneuron_kwargs = {{ init_potential = {init} }}\n'
        + (f'neuron = "{neuron}"\n' if neuron else "") +
        f'[train]\nloss = "{spec["loss"]}"\n')
    summary = {"status": "completed", "test_acc_per_step": [step1] + [0.9] * (T - 1),
               "test_acc_mean": acc_mean, "test_acc_last": 0.9,
               "firing_rate": rates or {"body.2": 0.1, "body.5": 0.2}}
    if static is not None:
        summary["study"] = {"static_input": static}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "test_acc": a, "test_acc_last": a - 0.01}) + "\n"
        for e, a in enumerate(curve, 1)))


def test_step1_criterion_only_for_static_input(tmp_path):
    # the spec's ">= 4 points at step 1" criterion is about a static image repeated T times;
    # event and sequence sets get the paired differences but no criterion line
    for arm, step1 in (("baseline", 0.80), ("lts", 0.78), ("imp", 0.90), ("imp_lts", 0.88)):
        write_run(tmp_path / "runs" / f"digits_{arm}", "digits", arm, 0, step1)
        write_run(tmp_path / "runs" / f"dvs_{arm}", "digits-dvs", arm, 0, step1, static=False)
        write_run(tmp_path / "runs" / f"rate_{arm}", "digits", arm, 1, step1, static=False)
    runs = load_runs([tmp_path / "runs"])
    agg = aggregate(runs)
    assert agg["digits T=2"]["imp"]["static"] is False      # one rate-coded run is mixed in
    md = imp_report([tmp_path / "runs" / f"digits_{a}" for a in ("baseline", "lts", "imp",
                                                                 "imp_lts")],
                    tmp_path / "a", plots=False).read_text()
    assert "Spec criterion for a static input" in md
    assert "imp_lts 88.0% − best zero-start arm baseline 80.0% = **+8.0 points** (met)" in md
    md = imp_report([tmp_path / "runs" / f"dvs_{a}" for a in ("baseline", "lts", "imp",
                                                              "imp_lts")],
                    tmp_path / "b", plots=False).read_text()
    assert "## digits-dvs T=2" in md and "(imp − baseline, step-1 accuracy): +10.0 (n=1)" in md
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


# Synthetic studies with known per-seed values: baseline step 1 varies a lot from seed to
# seed, each other arm is baseline + a known per-seed offset, so the paired differences and
# their t-intervals are known exactly.
SEEDS = (0, 1, 2, 3, 4)
BASE = {s: 0.50 + 0.08 * s for s in SEEDS}


def synthetic_study(root, offsets, static=True, seeds=SEEDS):
    """``offsets[arm] = (step-1 offsets per seed, mean-readout offsets, curve)``."""
    for arm, (d1, dm, curve) in offsets.items():
        for i, s in enumerate(seeds):
            c = curve(s) if callable(curve) else curve
            write_run(root / f"{arm}_s{s}", "digits", arm, s, BASE[s] + d1[i],
                      static=static, acc_mean=BASE[s] + dm[i], curve=c)


def known_interval(d):
    from membra.experiments.stats import t_quantile

    t = torch.tensor(d, dtype=torch.float64)
    half = t_quantile(0.975, len(d) - 1) * t.std().item() / len(d) ** 0.5
    return t.mean().item(), half


def test_paired_claims_have_the_known_values_and_all_three_verdicts(tmp_path):
    from membra.experiments.imp_tables import claim_rows

    zero = [0.0] * 5
    up = [0.10, 0.12, 0.11, 0.09, 0.13]          # imp − baseline at step 1: clearly > 0
    mixed = [0.02, -0.03, 0.01, -0.01, 0.015]    # imp_lts − lts: CI contains 0
    down = [-0.02, -0.03, -0.025, -0.02, -0.035]  # imp_ls_tet − imp_tet mean readout: < 0
    synthetic_study(tmp_path, {
        "baseline": (zero, zero, [0.5, 0.8, 0.9]), "imp": (up, zero, [0.6, 0.9, 0.9]),
        "lts": (zero, zero, [0.4, 0.7, 0.85]), "imp_lts": (mixed, zero, [0.8, 0.85, 0.9]),
        "imp_tet": (zero, zero, [0.9]), "imp_ls_tet": (zero, down, [0.9])})
    arms = aggregate(load_runs([tmp_path]))["digits T=2"]
    rows = {(r["a"], r["b"], r["kind"]): r for r in claim_rows(arms)}
    for key, d, want in [(("imp", "baseline", "step1"), up, "supported"),
                         (("imp_lts", "lts", "step1"), mixed,
                          "not distinguishable at this size"),
                         (("imp_ls_tet", "imp_tet", "acc_mean"), down, "not supported")]:
        r = rows[key]
        mean, half = known_interval(d)
        assert r["interval"].mean == pytest.approx(mean) and r["interval"].n == 5
        assert r["interval"].half == pytest.approx(half)
        assert list(r["diffs"]) == list(SEEDS)
        assert r["verdict"] == want, key
    # epochs to reach the highest accuracy every run reaches (0.85 for lts vs baseline):
    # lts 3, baseline 3 -> 0 on every seed; imp_lts (0.85 at 2) vs imp (0.9 at 2): threshold
    # 0.9 -> imp_lts 3, imp 2 -> +1 epoch, LTS slower: not supported... with no spread
    lts = rows[("lts", "baseline", "curve")]
    assert "85.0%" in lts["measure"] and lts["interval"].mean == 0
    assert lts["verdict"] == "not distinguishable at this size"
    imp_lts = rows[("imp_lts", "imp", "curve")]
    assert imp_lts["interval"].mean == 1 and imp_lts["verdict"] == "not supported"
    last = rows[("imp_lts", "imp", "curve_last")]            # same curves, 1 point lower
    assert "89.0%" in last["measure"] and last["interval"].mean == 1
    md = imp_report([tmp_path], tmp_path / "rep", plots=False).read_text()
    m, h = known_interval(up)
    assert (f"**IMP raises step-1 accuracy (mean CE)** (imp − baseline, step-1 accuracy): "
            f"{100 * m:+.1f} ± {100 * h:.1f} points, 95% CI [{100 * (m - h):+.1f}, "
            f"{100 * (m + h):+.1f}], paired seeds: s0 +10.0, s1 +12.0") in md
    assert md.count("⇒ **supported**") == 1 and md.count("⇒ **not supported**") >= 2
    assert len(rows) == 7
    assert "Verdict rule: 95% CI excludes 0 in the claimed direction" in md


def test_pairing_is_by_seed_not_by_position(tmp_path):
    # imp ran seeds 0-4, baseline 1-4 only: the difference pairs equal seeds; an unpaired
    # (Welch-like) comparison would drown +2 points in the seeds' 8-point spread
    from membra.experiments.imp_tables import claim_rows

    synthetic_study(tmp_path / "a", {"imp": ([0.02] * 5, [0.0] * 5, [0.9])})
    synthetic_study(tmp_path / "b", {"baseline": ([0.0] * 4, [0.0] * 4, [0.9])},
                    seeds=(1, 2, 3, 4))
    arms = aggregate(load_runs([tmp_path]))["digits T=2"]
    (row,) = [r for r in claim_rows(arms) if r["b"] == "baseline"]
    assert list(row["diffs"]) == [1, 2, 3, 4]
    assert all(d == pytest.approx(0.02) for d in row["diffs"].values())
    assert row["verdict"] == "supported"


def test_one_seed_prints_n1_never_plus_minus_zero(tmp_path):
    synthetic_study(tmp_path, {a: ([0.0], [0.0], [0.9]) for a in ARMS}, seeds=(3,))
    md = imp_report([tmp_path], tmp_path / "rep", plots=False).read_text()
    assert "± 0.0" not in md and "(n=1)" in md
    assert "| baseline | 1 | 74.0 (n=1) | 90.0 (n=1) | 74.0 (n=1) | 90.0 (n=1) |" in md
    assert md.count("**not distinguishable at this size**") == 7
    assert "95% CI" not in md.split("Claims (paired over seeds):")[1]


def test_convergence_claim_only_on_static_input_and_needs_metrics(tmp_path):
    synthetic_study(tmp_path / "dvs", {a: ([0.0] * 2, [0.0] * 2, [0.9]) for a in ARMS},
                    static=False, seeds=(0, 1))
    md = imp_report([tmp_path / "dvs"], tmp_path / "r1", plots=False).read_text()
    assert md.count("not measured — stated for a static input") == 4
    synthetic_study(tmp_path / "st", {a: ([0.0] * 2, [0.0] * 2, ()) for a in ARMS},
                    seeds=(0, 1))
    md = imp_report([tmp_path / "st"], tmp_path / "r2", plots=False).read_text()
    assert md.count("not measured — a run has no metrics.jsonl") == 4


def test_a_resumed_run_counts_each_epoch_once(tmp_path):
    write_run(tmp_path / "r", "digits", "imp", 0, 0.9, curve=[0.5, 0.6])
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:          # resumed: epoch 2 again
        f.write(json.dumps({"epoch": 2, "test_acc": 0.7}) + "\n\n")
        f.write(json.dumps({"epoch": 3, "test_acc": 0.8, "train_loss": 0.1}) + "\n")
    (r,) = load_runs([tmp_path])
    assert r["curve"] == [0.5, 0.7, 0.8]
    (tmp_path / "r" / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="metrics.jsonl: line 1 is not JSON"):
        load_runs([tmp_path])


@pytest.mark.parametrize("T", [1, 3, 5])
def test_other_T_is_another_section(tmp_path, T):
    write_run(tmp_path / "a", "mnist-5k", "imp", 0, 0.9, T=4)
    write_run(tmp_path / "b", "mnist-5k", "imp", 0, 0.8, T=T)
    agg = aggregate(load_runs([tmp_path]))
    assert sorted(agg) == sorted({"mnist-5k T=4", f"mnist-5k T={T}"})


def test_two_runs_of_one_arm_and_seed_are_refused(tmp_path):
    write_run(tmp_path / "a", "digits", "imp", 2, 0.9)
    write_run(tmp_path / "b", "digits", "imp", 2, 0.8)
    with pytest.raises(ValueError, match=r"digits T=2/imp: several runs with seed\(s\) \[2\]"):
        aggregate(load_runs([tmp_path]))


@pytest.mark.parametrize("neuron", ["alif", "cuba_lif", "if", "rlif"])
def test_another_neuron_model_is_another_section(tmp_path, neuron):
    # the IMP arms on ALIF (model.neuron) are another experiment than on LIF: same arm and
    # seed must not clash, and the LIF section keeps its name
    for arm, step1 in (("baseline", 0.5), ("imp", 0.7)):
        write_run(tmp_path / f"lif_{arm}", "mnist1d", arm, 0, step1, static=False)
        write_run(tmp_path / f"{neuron}_{arm}", "mnist1d", arm, 0, step1 - 0.1,
                  static=False, neuron=neuron)
    agg = aggregate(load_runs([tmp_path]))
    assert sorted(agg) == sorted({"mnist1d T=2", f"mnist1d T=2 {neuron}"})
    assert agg[f"mnist1d T=2 {neuron}"]["imp"]["per_step"][0].mean == pytest.approx(0.6)
    assert agg["mnist1d T=2"]["imp"]["per_step"][0].mean == pytest.approx(0.7)
    md = imp_report([tmp_path], tmp_path / "rep", plots=False).read_text()
    assert f"## mnist1d T=2 {neuron}\n" in md and "## mnist1d T=2\n" in md
