"""Training engine: exact resume, Ctrl-C, NaN stop, shape errors, run folders, schedule."""

import json
import math
import os
import signal

import _tiny
import pytest
import torch

from membra.train import checkpoint as ck
from membra.train import fit
from membra.train.loop import learning_rate

TIMING = {"samples_per_s", "epoch_time_s"}


pytestmark = pytest.mark.usefixtures("tiny")
cfg = _tiny.config


def history(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def assert_same_checkpoints(a, b):
    ta, ma = ck.load_checkpoint(a)
    tb, mb = ck.load_checkpoint(b)
    assert set(ta) == set(tb)
    assert any(k.startswith("optim.") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert (ma["epoch"], ma["step"]) == (mb["epoch"], mb["step"])


def test_resume_after_epoch_is_bit_identical(tmp_path):
    straight = fit(cfg(), run_dir=tmp_path / "straight")
    assert straight["status"] == "completed" and straight["epochs_done"] == 2

    def stop_after_first(event, info):
        return event == "epoch_end" and info["epoch"] == 1

    first = fit(cfg(), run_dir=tmp_path / "split", callbacks=[stop_after_first])
    assert first["status"] == "interrupted" and first["epochs_done"] == 1
    resumed = fit(cfg(), resume=tmp_path / "split")
    assert resumed["status"] == "completed" and resumed["run_dir"] == str(tmp_path / "split")
    assert_same_checkpoints(tmp_path / "straight", tmp_path / "split")
    assert history(tmp_path / "straight") == history(tmp_path / "split")
    assert len(history(tmp_path / "split")) == 2


def test_ctrl_c_mid_epoch_writes_checkpoint_and_resumes_exactly(tmp_path):
    fit(cfg(), run_dir=tmp_path / "straight")

    def press_ctrl_c(event, info):
        if event == "batch_end" and info["step"] == 8:  # inside epoch 2 (6 steps per epoch)
            os.kill(os.getpid(), signal.SIGINT)

    out = fit(cfg(), run_dir=tmp_path / "split", callbacks=[press_ctrl_c])
    assert out["status"] == "interrupted" and out["steps_done"] == 8
    path = ck.resolve_checkpoint(tmp_path / "split")
    assert path.name == "interrupt_step_00000008.safetensors"
    assert ck.read_meta(path)["batch_in_epoch"] == 2
    fit(None, resume=tmp_path / "split")  # config taken from the checkpoint
    assert_same_checkpoints(tmp_path / "straight", tmp_path / "split")
    assert history(tmp_path / "straight") == history(tmp_path / "split")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    from membra.losses import lts_ce

    calls = {"n": 0}

    def flaky(out, y):
        calls["n"] += 1
        loss = lts_ce(out, y)
        return loss * float("nan") if calls["n"] > 8 else loss  # NaN in epoch 2

    out = fit(cfg("train.epochs=3"), run_dir=tmp_path / "r", loss_fn=flaky)
    assert out["status"] == "nan_loss" and out["epochs_done"] == 1
    assert "not finite" in capsys.readouterr().out
    tensors, meta = ck.load_checkpoint(tmp_path / "r")
    assert meta["epoch"] == 1
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))


def test_non_finite_weights_after_a_finite_loss_never_become_a_checkpoint(tmp_path, capsys):
    def poison(event, info):
        if event == "batch_end" and info["step"] == 12:  # last batch of epoch 2
            with torch.no_grad():
                info["model"][0].weight[0, 0] = float("inf")

    out = fit(cfg("train.epochs=3"), run_dir=tmp_path / "r", callbacks=[poison])
    assert out["status"] == "nan_loss" and out["epochs_done"] == 1
    assert "not finite after epoch 2" in capsys.readouterr().out
    path = ck.resolve_checkpoint(tmp_path / "r")
    assert path.name == "epoch_0001.safetensors"
    tensors, _ = ck.load_checkpoint(path)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_shape_mismatch_names_layer_and_shapes(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(10, 3))
    with pytest.raises(ValueError) as e:
        fit(cfg(), run_dir=tmp_path / "r", model=model)
    msg = str(e.value)
    assert "layer '0' (Linear)" in msg and "(3, 2, 8)" in msg and "(8,)" in msg
    wrong_k = torch.nn.Sequential(torch.nn.Linear(8, 5))
    with pytest.raises(ValueError, match=r"\[3, B, 3\].*got \(3, 2, 5\)"):
        fit(cfg(), run_dir=tmp_path / "r2", model=wrong_k)


def test_unwritable_run_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="not writable"):
        fit(cfg(), run_dir=blocker / "run")


def test_fresh_run_never_overwrites_and_resume_checks_config(tmp_path):
    a = fit(cfg("train.epochs=1"), run_dir=tmp_path / "r")
    b = fit(cfg("train.epochs=1"), run_dir=tmp_path / "r")
    assert a["run_dir"] == str(tmp_path / "r") and b["run_dir"] == str(tmp_path / "r-1")
    with pytest.raises(ValueError, match="train.lr: checkpoint 0.01 vs config 0.5"):
        fit(cfg("train.lr=0.5"), resume=tmp_path / "r")


def test_run_folder_contents_and_metrics(tmp_path):
    out = fit(cfg("train.epochs=2", "train.keep_checkpoints=1", "run.plots=true",
                  "run.tensorboard=true"), run_dir=tmp_path / "r")
    r = tmp_path / "r"
    assert (r / "config.toml").is_file() and (r / "summary.json").is_file()
    assert [p.name for p in (r / "checkpoints").glob("*.safetensors")] == \
        ["epoch_0002.safetensors"]
    assert {p.name for p in (r / "plots").glob("*.png")} >= {
        "curves.png", "per_step_accuracy.png", "firing_rate.png", "init_potential.png"}
    pytest.importorskip("tensorboard")
    assert list((r / "tb").glob("events.out.tfevents.*"))
    assert out["test_acc"] == out["test_acc_last"] == out["test_acc_per_step"][-1]
    assert out["test_acc_mean"] == out["test_acc_cumulative"][-1]
    assert out["test_samples"] == 48 and set(out["firing_rate"]) == {"2"}
    assert 0 <= out["firing_rate"]["2"] <= 1


def test_evaluate_run_matches_training_metrics(tmp_path):
    from membra.train import evaluate_run

    out = fit(cfg("train.epochs=1"), run_dir=tmp_path / "r")
    ev = evaluate_run(tmp_path / "r", show=False)
    for k in ("test_acc", "test_acc_per_step", "test_acc_cumulative", "test_acc_mean"):
        assert ev[k] == out[k]
    assert ev["test_loss"] == pytest.approx(out["test_loss"], rel=1e-6)


def test_evaluate_run_counts_synaptic_operations(tmp_path):
    """membra eval's SOP table: the first Linear sees a static analog input (one dense pass,
    8 x 16 MACs), the second one the LIF spikes (3 accumulates per spike), per sample."""
    from membra.train import evaluate_run

    fit(cfg("train.epochs=1"), run_dir=tmp_path / "r")
    model = _tiny.tiny_model()
    ev = evaluate_run(tmp_path / "r", show=False, model=model)
    test = _tiny.Blobs("test", 3, n=48)
    x = torch.stack([test[i][0] for i in range(16)]).transpose(0, 1)  # first eval batch
    with torch.no_grad():
        spikes = model[:3](x).sum().item() / x.shape[1]
    first, second = ev["energy"]["layers"]
    assert (first["macs"], first["sops"]) == (8 * 16, 0)
    assert second["spikes"] == pytest.approx(spikes)
    assert second["sops"] == pytest.approx(3 * spikes)
    assert ev["energy"]["ann_macs"] == 8 * 16 + 16 * 3


def test_training_learns(tmp_path):
    out = fit(cfg("train.epochs=6", "data.options={n=192}"), run_dir=tmp_path / "r")
    assert out["test_acc"] > 0.8


def test_learning_rate_schedule_closed_form():
    tc = cfg("train.warmup_epochs=1", "train.epochs=4", "train.min_lr=0.001").train
    spe, total = 5, 20
    lrs = [learning_rate(tc, s, total, spe) for s in range(total)]
    assert lrs[:5] == pytest.approx([0.01 * (s + 1) / 5 for s in range(5)])
    for s in range(5, 20):
        want = 0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * (s - 5) / 15))
        assert lrs[s] == pytest.approx(want)
    const = cfg("train.schedule='constant'").train
    assert learning_rate(const, 7, 12, 6) == 0.01
