"""LidarNav2D (spec test 9): env checker, analytic ray distances, a go-to-goal controller."""

import math

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from membra.control import make_env  # noqa: E402
from membra.control.lidar_nav import (  # noqa: E402
    LidarNav2D,
    clearance,
    ray_distances,
    to_rate_values,
)


def test_env_checker_and_registration():
    from gymnasium.utils.env_checker import check_env

    check_env(gym.make("membra/LidarNav2D-v0").unwrapped)
    env = make_env("membra/LidarNav2D-v0")
    assert env.observation_space.shape == (22,)
    o1, _ = env.reset(seed=5)
    o2, _ = env.reset(seed=5)
    assert np.array_equal(o1, o2)
    assert to_rate_values(o1).shape == (24,)
    assert (to_rate_values(o1) >= 0).all() and (to_rate_values(o1) <= 1).all()


def test_ray_distances_analytic():
    circles = np.array([[7.0, 8.0, 0.5]])
    no_boxes = np.zeros((0, 4))
    d = ray_distances((5.0, 8.0), 0.0, circles, no_boxes,
                      angles=np.array([0.0, math.pi / 2, -math.pi / 2]))
    np.testing.assert_allclose(d, [1.5, 2.0, 3.5], atol=1e-9)  # circle, wall y=10, capped
    # off-centre hit: ray y = 8 + 0.3 meets the circle at x = 7 - sqrt(0.25 - 0.09)
    d = ray_distances((5.0, 8.3), 0.0, circles, no_boxes, angles=np.array([0.0]))
    np.testing.assert_allclose(d, [2.0 - math.sqrt(0.16)], atol=1e-9)
    box = np.array([[5.0, 3.0, 0.5, 1.0]])  # x in [4.5, 5.5], y in [2, 4]
    d = ray_distances((5.0, 6.0), -math.pi / 2, np.zeros((0, 3)), box, angles=np.array([0.0]))
    np.testing.assert_allclose(d, [2.0], atol=1e-9)
    assert clearance((5.0, 6.0), np.zeros((0, 3)), box) == pytest.approx(2.0)


def test_ray_distances_match_ray_marching():
    rng = np.random.default_rng(0)
    circles = np.array([[3.0, 3.0, 0.6], [6.5, 4.0, 0.4]])
    boxes = np.array([[5.0, 7.0, 0.5, 0.3], [2.0, 6.0, 0.3, 0.6]])
    for _ in range(3):
        pos, heading = rng.uniform(1, 9, 2), rng.uniform(-math.pi, math.pi)
        if clearance(pos, circles, boxes) < 0.05:
            continue
        d = ray_distances(pos, heading, circles, boxes)
        for ang, di in zip(np.linspace(-math.pi / 2, math.pi / 2, 18), d, strict=True):
            th = heading + ang
            ts = np.arange(0, 3.5, 2e-3)
            pts = pos + ts[:, None] * np.array([math.cos(th), math.sin(th)])
            hit = [t for t, p in zip(ts, pts, strict=True) if clearance(p, circles, boxes) <= 0]
            march = hit[0] if hit else 3.5
            assert abs(march - di) < 4e-3


def test_go_to_goal_succeeds_without_obstacles():
    env = LidarNav2D(n_obstacles=0)
    successes = 0
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        for _ in range(1000):
            g = float(obs[0])
            turn = np.clip(g, -1, 1) * 0.5
            obs, r, term, trunc, info = env.step(np.array([0.5 - turn, 0.5 + turn]))
            if term or trunc:
                break
        successes += info["outcome"] == "success"
    assert successes == 5


def test_collision_and_dynamic():
    env = LidarNav2D(n_obstacles=8, dynamic=True)
    obs, _ = env.reset(seed=1)
    c0 = env.circles.copy()
    b0 = env.boxes.copy()
    for _ in range(50):
        obs, r, term, trunc, info = env.step(np.array([1.0, 1.0]))
        if term:
            break
    moved = (len(c0) and not np.allclose(c0, env.circles)) or \
        (len(b0) and not np.allclose(b0, env.boxes))
    assert moved
    with pytest.raises(ValueError, match="n_obstacles"):
        LidarNav2D(n_obstacles=(5, 2))
