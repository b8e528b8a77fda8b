"""The offline digits experiment through `membra convert train`: QCFS training with membra's
engine, PASCAL == ANN, the naive accuracy curve, and AL halving the levels."""

import re

import pytest
import torch
from typer.testing import CliRunner

from membra.cli import app
from membra.convert.report import evaluate_snn
from membra.experiments.qcfs_pascal import eval_batches, load_stage

CONFIG = "configs/convert_digits.toml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("convert")
    res = CliRunner().invoke(app, ["convert", "train", CONFIG, "--set", f"run.out_dir={out}",
                                   "--set", "run.progress=false",
                                   "--set", "run.tensorboard=false"])
    assert res.exit_code == 0, res.output
    return out / "convert_digits"


def test_pascal_equals_the_ann_and_naive_approaches_it(run_dir):
    net, cfg, st = load_stage(run_dir, "uniform")
    batches = eval_batches(cfg)
    pascal = evaluate_snn(net, batches, "pascal")
    assert pascal["snn_acc"] == pascal["ann_acc"] and pascal["agreement"] == 1.0
    assert pascal["neurons"] == 597 * 4160 and pascal["folded_logit_diff"] < 1e-4
    assert pascal["time_steps"] == 1 + sum(st["L"].values())
    # exactness against the folded ANN is checked in float64: in float32, trained (non
    # fixed-point) weights may put a pre-activation within rounding distance of a boundary
    exact = evaluate_snn(net, batches, "pascal", dtype=torch.float64)
    assert exact["count_mismatches"] == 0 and exact["folded_logit_diff"] < 1e-10
    naive = evaluate_snn(net, batches, "naive", T=16)
    acc = naive["acc_per_T"]
    assert acc[7] >= acc[0] + 0.03
    assert all(abs(a - pascal["ann_acc"]) <= 0.015 for a in acc[7:])


def test_al_halves_the_levels_within_accuracy(run_dir):
    _, _, uni = load_stage(run_dir, "uniform")
    net, cfg, al = load_stage(run_dir, "al")
    assert sum(al["L"].values()) <= 0.5 * sum(uni["L"].values())
    pascal = evaluate_snn(net, eval_batches(cfg), "pascal", dtype=torch.float64)
    assert pascal["snn_acc"] == pascal["ann_acc"] and pascal["count_mismatches"] == 0
    assert pascal["snn_acc"] >= uni["test_acc"] - 0.015


def test_cli_run_and_report(run_dir, tmp_path):
    r = CliRunner().invoke(app, ["convert", "run", str(run_dir), "--mode", "naive", "--T", "4"])
    assert r.exit_code == 0, r.output
    assert "naive SNN (float32), 4 time steps" in r.output
    for extra in ([], ["--float64"], ["--stage", "uniform", "--neuron", "signed"]):
        r = CliRunner().invoke(app, ["convert", "run", str(run_dir), *extra])
        assert r.exit_code == 0, r.output
        lines = r.output.splitlines()
        folded = [ln for ln in lines if ln.startswith("vs the BN-folded ANN (what the SNN is "
                                                      "built from")]
        trained = [ln for ln in lines if ln.startswith("vs the trained ANN (BN unfolded")]
        assert len(folded) == len(trained) == 1, r.output
        for ln in folded + trained:  # each check names its reference and has its own figures
            assert re.search(r"\d+ count mismatches of 2,483,520.*same prediction "
                             r"[\d.]+%, max \|logit diff\| [\d.e+-]+$", ln), ln
        # every logit difference printed sits on a line that names its reference
        assert all(ln.startswith("vs the ") for ln in lines if "logit diff" in ln)
    r = CliRunner().invoke(app, ["convert", "run", str(run_dir), "--mode", "pascal", "--T", "4"])
    assert r.exit_code == 2 and "--T is for --mode naive" in r.output
    r = CliRunner().invoke(app, ["convert", "report", str(run_dir), "--out", str(tmp_path),
                                 "--naive-T", "8"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "report.md").read_text()
    assert "| uniform |" in md and "| al |" in md
    # counts against the folded and the trained ANN, both stages, in one labelled column
    assert "count mismatches vs folded / trained ANN" in md
    assert len(re.findall(r"\| \d+ / \d+ of 2,483,520 \|", md)) == 2
    for png in ("naive_vs_T.png", "layers.png", "uniform_vs_al.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_config_errors(tmp_path):
    r = CliRunner().invoke(app, ["convert", "train", CONFIG, "--set", "convert.Lx=4"])
    assert r.exit_code == 2 and "unknown config key 'convert.Lx'" in r.output
    r = CliRunner().invoke(app, ["convert", "train", CONFIG, "--set", "data.T=4"])
    assert r.exit_code == 2 and "data.T must be 1" in r.output
    r = CliRunner().invoke(app, ["convert", "run", str(tmp_path)])
    assert r.exit_code == 2 and "no convert.json" in r.output


@pytest.mark.parametrize("name", ["convert_digits", "convert_cifar10_vgg16",
                                  "convert_cifar10_resnet18", "convert_imagenet_resnet34"])
def test_shipped_configs_load_and_build(name):
    import inspect

    from membra.convert import NETS
    from membra.data.registry import dataset_entries
    from membra.experiments.qcfs_pascal import load_convert_config

    cfg, sec = load_convert_config(f"configs/{name}.toml")
    assert sec.net in NETS
    entry = {e.name: e for e in dataset_entries()}[cfg.data.name]
    params = inspect.signature(entry.builder).parameters
    assert set(cfg.data.options) <= set(params), cfg.data.options
    assert set(sec.options) <= set(inspect.signature(NETS[sec.net]).parameters)
