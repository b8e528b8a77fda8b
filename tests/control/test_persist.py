"""The deployed regime (--persist) and the test/validation seed split."""

import functools

import pytest

pytest.importorskip("gymnasium")

from membra.control import evaluate, load_actor, make_env, pretrained_path  # noqa: E402
from membra.control.sweep import check_seeds, run_sweep  # noqa: E402
from membra.homeostasis import DWAMConfig  # noqa: E402

needs_pendulum = pytest.mark.skipif(
    not (pretrained_path("pendulum") / "actor.safetensors").is_file(),
    reason="shipped Pendulum controller missing")


@needs_pendulum
@pytest.mark.parametrize("cond", [("weight_gn", 0.05), ("weight_zero", 0.3)])
def test_persist_carries_the_adaptation_across_episodes(cond):
    actor, cfg = load_actor("pendulum")
    env_fn = functools.partial(make_env, cfg["env_id"])
    kw = dict(episodes=3, seed=1000, degradation=cond, dwam=DWAMConfig(eta=1e-3),
              max_steps=12, calibration_episodes=1)
    reset = evaluate(actor, env_fn, reset_each_episode=True, **kw)["episodes"]
    kept = evaluate(actor, env_fn, reset_each_episode=False, **kw)["episodes"]
    assert reset[0] == kept[0]  # the first episode starts from the same state
    # later episodes start from adapted weights: drift keeps growing instead of restarting
    drift = [k for k in kept[0] if k.endswith("/drift")]
    assert all(kept[-1][k] > reset[-1][k] for k in drift)


@pytest.mark.parametrize("seed,episodes,split,ok", [
    (1000, 10, "test", True), (1990, 10, "test", True), (1991, 10, "test", False),
    (2000, 10, "test", False), (0, 3, "test", False), (2000, 5, "validation", True),
    (1000, 5, "validation", False), (2995, 6, "validation", False)])
def test_seed_split_is_enforced(seed, episodes, split, ok):
    if ok:
        check_seeds(seed, episodes, split)
    else:
        with pytest.raises(ValueError, match=f"{split} runs use env seeds"):
            check_seeds(seed, episodes, split)


@needs_pendulum
def test_sweep_refuses_validation_seeds():
    with pytest.raises(ValueError, match="test runs use env seeds 1000"):
        run_sweep("pendulum", episodes=2, seed=2000, conditions=[None], progress=False)
