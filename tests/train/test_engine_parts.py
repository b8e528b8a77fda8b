"""The engine's pieces: one host sync per step, typed callbacks and their order, RunState,
RunStatus (same strings on disk as before)."""

import json
import os
import sys

import _tiny
import pytest
import torch

import membra
from membra.train import fit

_ENGINE_DIR = os.path.join(os.path.dirname(membra.__file__), "train") + os.sep
_SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


pytestmark = pytest.mark.usefixtures("tiny")
cfg = _tiny.config


def count_membra_syncs(monkeypatch) -> dict:
    """Patch the Tensor methods that copy a value to the host; count the calls made from the
    training engine's code (``membra/train/``). Syncs inside the model or the loss (torch's
    optimizers reading their CPU step counters, a loss checking its targets) are theirs."""
    counts = {"n": 0}
    for name in _SYNCS:
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, __orig=orig, **k):
            if sys._getframe(1).f_code.co_filename.startswith(_ENGINE_DIR):
                counts["n"] += 1
            return __orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counts


@pytest.mark.parametrize("over", [
    [],
    ["eval.readout=mean", "train.loss=mean_ce"],
    ["train.grad_clip=1.0", "data.batch_size=7"],          # ragged last batch, clipping
    ["train.optimizer=sgd", "data.batch_size=13", "train.loss=tet"],
    ["train.schedule=constant", "train.loss=ls_tet", "data.batch_size=32"],
])
def test_one_host_sync_per_training_step(tmp_path, monkeypatch, over):
    counts = count_membra_syncs(monkeypatch)
    seen = []

    def record(event, info):
        if event == "batch_end":
            seen.append((info["epoch"], counts["n"]))

    fit(cfg(*over), run_dir=tmp_path / "r", callbacks=[record])
    per_step = [b[1] - a[1] for a, b in zip(seen[:-1], seen[1:], strict=True) if a[0] == b[0]]
    assert len(per_step) >= 4
    assert per_step == [1] * len(per_step), per_step


class Recorder(membra.train.callbacks.Callback):
    """Records every hook with the state it saw."""

    def __init__(self, stop_at_step=None):
        self.events, self.stop_at_step = [], stop_at_step

    def on_fit_start(self, run, state):
        self.events.append(("fit_start", state.epoch, state.step))

    def on_epoch_start(self, run, state):
        self.events.append(("epoch_start", state.epoch, state.batch_in_epoch))

    def on_step_end(self, run, state, loss):
        assert isinstance(loss, float) and isinstance(state, membra.train.RunState)
        # the host copy of the sums is the device sums, read at this step's one sync
        assert state.logged == state.sums.tolist()
        assert state.logged[2] == state.batch_in_epoch * run.batch or \
            state.batch_in_epoch == run.steps_per_epoch
        self.events.append(("step", state.epoch, state.step))
        return state.step == self.stop_at_step

    def on_epoch_end(self, run, state, metrics):
        self.events.append(("epoch_end", state.epoch, metrics["epoch"]))

    def teardown(self, run, state):
        self.events.append(("teardown", state.epoch, state.step))

    def on_fit_end(self, run, state, summary):
        self.events.append(("fit_end", summary["status"], state.step))
        summary["extra"] = {"steps_seen": sum(e[0] == "step" for e in self.events)}


@pytest.mark.parametrize("batch,epochs", [(16, 2), (7, 3), (96, 2), (50, 1)])
def test_hooks_run_in_the_documented_order(tmp_path, batch, epochs):
    rec = Recorder()
    out = fit(cfg(f"data.batch_size={batch}", f"train.epochs={epochs}"),
              run_dir=tmp_path / "r", callbacks=[rec])
    spe = -(-96 // batch)
    expect = [("fit_start", 0, 0)]
    for e in range(epochs):
        expect.append(("epoch_start", e, 0))
        expect += [("step", e, e * spe + s + 1) for s in range(spe)]
        expect.append(("epoch_end", e + 1, e + 1))
    expect += [("teardown", epochs, epochs * spe), ("fit_end", "completed", epochs * spe)]
    assert rec.events == expect
    # what on_fit_end adds is returned and written to summary.json
    assert out["extra"] == {"steps_seen": epochs * spe}
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["extra"] == out["extra"]


@pytest.mark.parametrize("stop_at", [1, 5, 6, 8])
def test_a_hook_stops_like_ctrl_c_and_resume_continues(tmp_path, stop_at):
    out = fit(cfg(), run_dir=tmp_path / "r", callbacks=[Recorder(stop_at_step=stop_at)])
    assert out["status"] == membra.train.RunStatus.INTERRUPTED == "interrupted"
    assert out["steps_done"] == stop_at
    rec = Recorder()
    again = fit(None, resume=tmp_path / "r", callbacks=[rec])
    assert again["status"] == "completed" and again["steps_done"] == 12
    epoch = (stop_at - 1) // 6      # stopped after the last batch: that epoch is not closed
    assert rec.events[0] == ("fit_start", epoch, stop_at)
    assert rec.events[1] == ("epoch_start", epoch, stop_at - 6 * epoch)
    straight = fit(cfg(), run_dir=tmp_path / "s")
    assert again["test_acc_per_step"] == straight["test_acc_per_step"]
    assert again["train_loss"] == straight["train_loss"]


def test_status_strings_on_disk_are_unchanged():
    S = membra.train.RunStatus
    assert [s.value for s in S] == ["completed", "interrupted", "nan_loss", "max_steps"]
    for s in S:
        assert s == s.value and json.dumps(s) == json.dumps(s.value) and str(s) == s.value


@pytest.mark.parametrize("bad", [3, "progress", None])
def test_a_callback_that_is_not_one_is_refused_before_the_run_folder(tmp_path, bad):
    with pytest.raises(TypeError, match="callback"):
        fit(cfg(), run_dir=tmp_path / "r", callbacks=[bad])
    assert not (tmp_path / "r").exists()
