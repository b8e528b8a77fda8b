"""A MuJoCo task on a machine without MuJoCo: one line that names the task, the package that
failed to import and ``pip install 'membra[control]'`` -- from ``make_env`` and from every
``membra control`` verb. Needs no mujoco: the missing package is simulated in ``sys.modules``
(``None`` blocks an import; the other two of mujoco/glfw/imageio are stubbed so that the
import of gymnasium's MuJoCo envs reaches the blocked one whether or not they are installed).
"""

import sys
import types

import pytest

gym = pytest.importorskip("gymnasium")

from typer.testing import CliRunner  # noqa: E402

import membra.cli as cli  # noqa: E402
from membra.control import pretrained_path  # noqa: E402
from membra.control.envs import make_env  # noqa: E402

SIM_PACKAGES = ("mujoco", "glfw", "imageio")  # what gymnasium's MuJoCo envs import
MUJOCO_IDS = sorted(k for k, s in gym.registry.items()
                    if isinstance(s.entry_point, str)
                    and s.entry_point.startswith("gymnasium.envs.mujoco"))


@pytest.fixture
def without(monkeypatch):
    """``without(name)``: importing ``name`` fails, the other simulator packages import as
    stubs, and gymnasium's MuJoCo modules are re-imported (all restored afterwards)."""
    def gym_mujoco():
        return [m for m in sys.modules if m.startswith("gymnasium.envs.mujoco")]

    def block(name: str) -> None:
        for mod in gym_mujoco():
            monkeypatch.delitem(sys.modules, mod)
        for pkg in SIM_PACKAGES:
            stub = types.ModuleType(pkg)
            stub.__version__ = "3.3.7"
            monkeypatch.setitem(sys.modules, pkg, None if pkg == name else stub)
    yield block
    for mod in gym_mujoco():  # imported against the stubs: gone before the real ones return
        del sys.modules[mod]


def _check_message(text: str, env_id: str, missing: str) -> None:
    assert "\n" not in text.strip(), text
    for part in (env_id, "mujoco", repr(missing), "pip install 'membra[control]'"):
        assert part in text, (part, text)
    assert "gymnasium[mujoco]" not in text, text  # one install command, membra's


def test_every_mujoco_task_is_found():
    assert len(MUJOCO_IDS) >= 10 and "HalfCheetah-v5" in MUJOCO_IDS


@pytest.mark.parametrize("missing", SIM_PACKAGES)
@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_make_env_names_the_missing_package(without, env_id, missing):
    without(missing)
    with pytest.raises(ImportError) as info:
        make_env(env_id)
    _check_message(str(info.value), env_id, missing)


@pytest.mark.parametrize("missing", SIM_PACKAGES)
def test_other_tasks_do_not_need_mujoco(without, missing):
    without(missing)
    env = make_env("Pendulum-v1")
    assert env.reset(seed=0)[0].shape == (3,)
    env.close()


needs_cheetah = pytest.mark.skipif(
    not (pretrained_path("halfcheetah") / "actor.safetensors").is_file(),
    reason="shipped HalfCheetah controller missing")

VERBS = {
    "sweep": ["control", "sweep", "halfcheetah", "--conditions", "healthy,weight_gn:0.05",
              "--episodes", "1", "--repeats", "2", "--out", "{tmp}/sweep"],
    "eval": ["control", "eval", "halfcheetah", "--episodes", "1", "--dwam", "both",
             "--degrade", "weight_zero:0.3"],
    "tune": ["control", "tune", "halfcheetah", "--etas", "1e-4", "--episodes", "1",
             "--no-save"],
    "train": ["control", "train", "--env", "HalfCheetah-v5", "--steps", "10",
              "--out", "{tmp}/train"],
}


@needs_cheetah
@pytest.mark.parametrize("missing", SIM_PACKAGES)
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_cli_verbs_give_one_line(without, monkeypatch, tmp_path, verb, missing):
    """Exit 2 and exactly one ``error:`` line (no progress bar, no traceback hint)."""
    monkeypatch.setitem(cli._DEBUG, "on", False)
    without(missing)
    args = [a.format(tmp=tmp_path) for a in VERBS[verb]]
    res = CliRunner().invoke(cli.app, args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    env_id = "HalfCheetah-v5"
    _check_message(lines[0], env_id, missing)
    assert not (tmp_path / "sweep").exists()  # nothing written before the check
