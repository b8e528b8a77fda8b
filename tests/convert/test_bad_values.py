"""Conversion never turns bad values into good-looking numbers: NaN/inf weights, BN statistics,
lambda and inputs are refused with the layer's name (or stay NaN), and misuse (train mode, no
QCFS, functional ReLU, time-first input) gets a message that says what to do."""

import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from convert_cases import random_cnn, random_mlp
from torch import nn

from membra.convert import (
    QCFS,
    InvalidValueError,
    Residual,
    UnsupportedLayerError,
    fold_bn,
    replace_relu,
    signed_counts,
    to_snn,
    two_phase_counts,
)

BUILDS = {"mlp": random_mlp, "cnn": random_cnn}
MODES = [("pascal", {}), ("pascal", {"neuron": "signed"}), ("pascal", {"simulate": "counts"}),
         ("naive", {"T": 4, "allow_spike_maxpool": True})]


def first(model, kind):
    return next((p, m) for p, m in model.named_modules() if isinstance(m, kind))


def poison(model, target: str, value: float, seed: int) -> str:
    """Write ``value`` into one random entry of ``target`` of one layer; return its path."""
    g = torch.Generator().manual_seed(seed)
    kind, attr = target.split(".")
    cls = {"weight": (nn.Linear, nn.Conv2d), "bn": (nn.BatchNorm1d, nn.BatchNorm2d),
           "qcfs": QCFS}[kind]
    layers = [(p, m) for p, m in model.named_modules() if isinstance(m, cls)]
    path, m = layers[int(torch.randint(len(layers), (1,), generator=g))]
    t = getattr(m, attr)
    flat = t.data.view(-1)
    flat[int(torch.randint(flat.numel(), (1,), generator=g))] = value
    return path


TARGETS = ["weight.weight", "weight.bias", "bn.weight", "bn.bias", "bn.running_mean",
           "bn.running_var", "qcfs.lam"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", BUILDS)
def test_non_finite_parameters_are_refused_naming_the_layer(name, target, value):
    model, x = BUILDS[name](TARGETS.index(target))
    path = poison(model, target, value, seed=len(target))
    if math.isnan(value):
        with torch.no_grad():
            assert torch.isnan(model(x)).any()  # the premise: the ANN's output is NaN
    for mode, kw in MODES:
        with pytest.raises(InvalidValueError, match=rf"'{path}' \(.*(NaN/inf|lam|running_var)"):
            to_snn(model, mode, **kw)


@pytest.mark.parametrize("var,eps", [(-0.5, 1e-5), (-1e-5, 1e-5), (0.0, 0.0), (-2.0, 0.0)])
@pytest.mark.parametrize("name", BUILDS)
def test_impossible_batchnorm_variance_is_refused(name, var, eps):
    model, x = BUILDS[name](3)
    path, bn = first(model, (nn.BatchNorm1d, nn.BatchNorm2d))
    bn.running_var[0] = var
    bn.eps = eps
    with pytest.raises(InvalidValueError, match=rf"'{path}' \(BatchNorm.d\): running_var"):
        to_snn(model)
    with pytest.raises(InvalidValueError, match="running_var"):
        fold_bn(model)


@pytest.mark.parametrize("name", BUILDS)
def test_zero_variance_with_positive_eps_is_a_valid_batchnorm(name):
    model, x = BUILDS[name](4)
    _, bn = first(model, (nn.BatchNorm1d, nn.BatchNorm2d))
    bn.running_var[0] = 0.0
    with torch.no_grad():
        ref = fold_bn(model).double()(x.double())
    out = to_snn(model, dtype=torch.float64)(x.double())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, -1.0, -1e-30, math.nan, math.inf])
@pytest.mark.parametrize("name", BUILDS)
def test_non_positive_or_non_finite_lambda_is_refused_at_conversion(name, lam):
    model, _ = BUILDS[name](5)
    qs = [(p, m) for p, m in model.named_modules() if isinstance(m, QCFS)]
    path, q = qs[-1]
    q.lam.data.fill_(lam)
    for mode, kw in MODES:
        with pytest.raises(InvalidValueError, match=rf"'{path}' \(QCFS\): lam"):
            to_snn(model, mode, **kw)


@pytest.mark.parametrize("L", [0, -3, 2.0, True])
def test_level_set_by_hand_is_checked(L):
    model, _ = random_mlp(0)
    path, q = first(model, QCFS)
    q.L = L
    with pytest.raises(InvalidValueError, match=rf"'{path}' \(QCFS\): L"):
        to_snn(model)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", BUILDS)
def test_non_finite_input_is_refused(name, value):
    model, x = BUILDS[name](6)
    g = torch.Generator().manual_seed(7)
    for mode, kw in MODES:
        snn = to_snn(model, mode, **kw)
        bad = x.clone().view(-1)
        idx = torch.randint(bad.numel(), (3,), generator=g)
        bad[idx] = value
        with pytest.raises(ValueError, match=r"NaN/inf value"):
            snn(bad.view_as(x))


@pytest.mark.parametrize("mode,kw", MODES)
def test_nan_arising_inside_the_net_stays_nan(mode, kw):
    """Finite weights whose products overflow: a residual sum of +inf and -inf is NaN in the
    ANN. The SNN's output must be NaN where the ANN's is, not a finite 'no spike' value."""
    body, short = nn.Linear(2, 3), nn.Linear(2, 3)
    body.weight.data = torch.tensor([[3e38, 0.0], [1.0, 0.5], [-1.0, 2.0]])
    short.weight.data = torch.tensor([[-3e38, 0.0], [0.5, 0.5], [1.0, 0.0]])
    net = nn.Sequential(Residual(body, short), QCFS(4, 1.0), nn.Linear(3, 2)).eval()
    x = torch.tensor([[10.0, -1.0], [0.5, 0.25], [1e-3, 2.0], [-10.0, 1.0]])
    with torch.no_grad():
        ref = net(x)
    assert torch.isnan(ref).any() and torch.isfinite(ref).any()
    out = to_snn(net, mode, **kw)(x)
    assert torch.equal(torch.isnan(out), torch.isnan(ref))


@pytest.mark.parametrize("mode", ["pascal", "naive"])
def test_evaluation_reports_a_nan_difference_not_zero(mode):
    """``max(0.0, nan)`` is 0.0 in Python: the reported logit difference must stay NaN."""
    from membra.convert.report import evaluate_snn

    body, short = nn.Linear(2, 3), nn.Linear(2, 3)
    body.weight.data[0] = torch.tensor([3e38, 0.0])
    short.weight.data[0] = torch.tensor([-3e38, 0.0])
    net = nn.Sequential(Residual(body, short), QCFS(4, 1.0), nn.Linear(3, 2)).eval()
    x = torch.tensor([[0.5, 0.25], [10.0, -1.0]])
    res = evaluate_snn(net, [(x, torch.tensor([0, 1]))], mode, T=4 if mode == "naive" else None)
    assert math.isnan(res["max_logit_diff"])
    if mode == "pascal":
        assert math.isnan(res["folded_logit_diff"])


@pytest.mark.parametrize("L", [1, 3, 8])
def test_neurons_keep_nan_membranes_nan(L):
    z = torch.tensor([0.3, math.nan, 2.0, math.nan], dtype=torch.float64)
    assert torch.equal(torch.isnan(two_phase_counts(z, 1.0, L).sum(0)), torch.isnan(z))
    currents = torch.stack([z / 2, torch.tensor([0.1, 0.2, math.nan, 0.0])])
    spikes, _ = signed_counts(currents.double(), 1.0, L)
    assert torch.isnan(spikes.sum(0)).tolist() == [False, True, True, True]


@pytest.mark.parametrize("name", BUILDS)
def test_train_mode_warns(name):
    model, x = BUILDS[name](8)
    model.train()
    with pytest.warns(UserWarning, match=r"train\(\) mode.*model.eval\(\)"):
        to_snn(model)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_snn(model)


@pytest.mark.parametrize("net", [
    nn.Sequential(nn.Linear(4, 3)),
    nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.1), nn.Linear(6, 3)),
    nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3)),
    nn.Sequential(),
], ids=["linear", "mlp-without-activation", "conv-bn", "empty"])
def test_a_net_without_qcfs_is_refused(net):
    with pytest.raises(UnsupportedLayerError, match="no QCFS activation.*replace_relu"):
        to_snn(net.eval())


class _Functional(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how, self.fc1, self.fc2 = how, nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.fc1(x)
        h = {"F.relu": F.relu, "torch.relu": torch.relu, "method": lambda t: t.relu(),
             "inplace": lambda t: F.relu(t, inplace=True)}[self.how](h)
        return self.fc2(h)


class _Fixed(nn.Module):
    """What the hint says to write."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("how", ["F.relu", "torch.relu", "method", "inplace"])
def test_functional_relu_hint_points_to_something_that_works(how):
    with pytest.raises(UnsupportedLayerError,
                       match=r"self.act = nn.ReLU\(\).*x = self.act\(x\).*replace_relu"):
        to_snn(_Functional(how).eval())
    with pytest.raises(UnsupportedLayerError):  # replace_relu alone does not help
        to_snn(replace_relu(_Functional(how), L=4).eval())
    fixed = replace_relu(_Fixed(), L=4, lam_init=1.0).eval()
    x = torch.rand(5, 4, dtype=torch.float64)
    with torch.no_grad():
        ref = fixed.double()(x)
    torch.testing.assert_close(to_snn(fixed, dtype=torch.float64)(x), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("T", [1, 3, 4])
@pytest.mark.parametrize("name", ["mlp", "cnn", "flatten-first"])
def test_time_first_input_says_conversion_takes_batch_first(name, T):
    if name == "flatten-first":
        model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), QCFS(2, 1.0),
                              nn.Linear(5, 2)).eval()
        x = torch.rand(6, 3, 4)
    else:
        model, x = BUILDS[name](9)
    seq = x.unsqueeze(0).expand(T, *x.shape)
    for mode, kw in MODES:
        snn = to_snn(model, mode, **kw)
        with pytest.raises(ValueError, match=r"takes the ANN's input \[B, \.\.\.\].*time-first"):
            snn(seq)


# ---- the `membra convert` commands: one named error line, exit status 2 ----------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from typer.testing import CliRunner

    from membra.cli import app

    out = tmp_path_factory.mktemp("tiny")
    res = CliRunner().invoke(app, ["convert", "train", "configs/convert_digits.toml",
                                   "--set", f"run.out_dir={out}", "--set", "train.epochs=1",
                                   "--set", "convert.al=false", "--set", "run.progress=false",
                                   "--set", "run.tensorboard=false"])
    assert res.exit_code == 0, res.output
    return out / "convert_digits"


def tampered(run, tmp_path, key: str, value: float):
    """A copy of ``run`` whose checkpoint holds ``value`` in entry 0 of tensor ``key`` (saved
    through membra's checkpoint writer, so the file itself is valid)."""
    import shutil

    from membra.train.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = resolve_checkpoint(copy)
    tensors, meta = load_checkpoint(path)
    tensors[f"model.net.{key}"].view(-1)[0] = value
    meta.pop("format", None)
    save_checkpoint(path, tensors, meta)
    return copy


def one_error_line(result, pattern: str):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(pattern, lines[0]), lines[0]


COMMANDS = [["run"], ["run", "--mode", "naive", "--T", "3"], ["run", "--float64"],
            ["run", "--neuron", "signed", "--bias", "first"], ["report", "--naive-T", "2"]]


@pytest.mark.parametrize("key,value,pattern", [
    ("0.weight", math.nan, r"'0' \(Conv2d\): weight has 1 NaN/inf"),
    ("11.bias", math.inf, r"'11' \(Linear\): bias has 1 NaN/inf"),
    ("4.running_var", -1.0, r"'4' \(BatchNorm2d\): running_var must be >= 0"),
    ("1.running_mean", math.nan, r"'1' \(BatchNorm2d\): running_mean has 1 NaN/inf"),
    ("2.lam", 0.0, r"'2' \(QCFS\): lam .* must be finite and > 0, got 0.0"),
    ("7.body.2.lam", -2.0, r"'7.body.2' \(QCFS\): lam"),
    ("13.lam", math.nan, r"'13' \(QCFS\): lam .* got nan"),
])
def test_cli_refuses_a_tampered_checkpoint_naming_the_layer(tiny_run, tmp_path, key, value,
                                                            pattern):
    from typer.testing import CliRunner

    from membra.cli import app

    run = tampered(tiny_run, tmp_path, key, value)
    for cmd in COMMANDS:
        extra = ["--out", str(tmp_path / "rep")] if cmd[0] == "report" else []
        r = CliRunner().invoke(app, ["convert", cmd[0], str(run), *cmd[1:], *extra])
        one_error_line(r, "error: cannot convert " + pattern)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_cli_refuses_non_finite_input(tiny_run, monkeypatch, value):
    from typer.testing import CliRunner

    import membra.experiments.qcfs_pascal as recipe
    from membra.cli import app

    real = recipe.eval_batches

    def poisoned(cfg, batch_size=None):
        batches = real(cfg, batch_size)
        x, y = batches[-1]
        x = x.clone()
        x.view(-1)[5] = value
        return [*batches[:-1], (x, y)]

    monkeypatch.setattr(recipe, "eval_batches", poisoned)
    for cmd in COMMANDS[:4]:
        r = CliRunner().invoke(app, ["convert", cmd[0], str(tiny_run), *cmd[1:]])
        one_error_line(r, r"error: input of shape \(\d+, 1, 8, 8\) holds 1 NaN/inf value")


# ---- convert.json is data read from a run folder: it may not point anywhere else ------------

def _edit_record(run, tmp_path, edit):
    import json
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "convert.json"
    text = path.read_text()
    new = edit(json.loads(text)) if callable(edit) else edit
    path.write_text(new if isinstance(new, str) else json.dumps(new))
    return copy


def _stage(**kv):
    return lambda r: {**r, "stages": [{**r["stages"][0], **kv}]}


@pytest.mark.parametrize("edit, pattern", [
    (_stage(run_dir="../other"), r"stage 'uniform' names folder '\.\./other'"),
    (_stage(run_dir="/etc"), r"stage 'uniform' names folder '/etc'"),
    (_stage(run_dir="al"), r"stage 'uniform' names folder 'al'"),
    (_stage(name="paper"), r"stage 0 is 'paper'"),
    (_stage(L=True), r"L=True"),
    (_stage(L=0), r"L=0"),
    (_stage(L="4"), r"L='4'"),
    (_stage(L={"2": 0.5}), r"L=\{'2': 0.5\}"),
    (lambda r: {**r, "stages": []}, r"no 'stages' list"),
    (lambda r: {k: v for k, v in r.items() if k != "convert"}, r"no 'convert' section"),
    (lambda r: [r], r"no 'convert' section"),
    ("{not json", r"not readable JSON"),
    ("[" * 100_000 + "]" * 100_000, r"not readable JSON \(RecursionError\)"),
    (b"\xff\xfe".decode("latin-1"), r"not readable JSON"),
])
def test_cli_refuses_an_edited_conversion_record(tiny_run, tmp_path, edit, pattern):
    """Every edit that could send `convert run` elsewhere, or crash it, is one named error."""
    from typer.testing import CliRunner

    from membra.cli import app

    run = _edit_record(tiny_run, tmp_path, edit)
    r = CliRunner().invoke(app, ["convert", "run", str(run)])
    one_error_line(r, r"is not a valid conversion record: .*" + pattern)


def test_a_stage_folder_linking_out_of_the_run_is_refused(tiny_run, tmp_path):
    import json
    import shutil

    from typer.testing import CliRunner

    from membra.cli import app

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_run, elsewhere)
    record = json.loads((run / "convert.json").read_text())
    record["stages"].append({**record["stages"][0], "name": "al", "run_dir": "al"})
    (run / "convert.json").write_text(json.dumps(record))
    (run / "al").symlink_to(elsewhere, target_is_directory=True)
    r = CliRunner().invoke(app, ["convert", "run", str(run), "--stage", "al"])
    one_error_line(r, r"leads outside the conversion run")
