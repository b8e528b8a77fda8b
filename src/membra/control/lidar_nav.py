r"""``LidarNav2D``: a 2D differential-drive robot reaching a goal among obstacles with an 18-ray
lidar (pure numpy, a lightweight stand-in for the Gazebo TurtleBot task of SDDPG/BDETT).

- World: 10 m x 10 m walled square, ``n_obstacles`` (default 6-10) circles (r in [0.3, 0.8] m)
  and axis-aligned boxes (side in [0.4, 1.2] m) placed with >= 0.6 m clearance from start and
  goal; start and goal >= 3 m apart. ``dynamic=True``: 3 obstacles move at 0.1-0.3 m/s and
  reflect off the walls.
- Robot: radius 0.18 m, ``dt = 0.1`` s; action ``a in [0, 1]^2`` (left, right wheel command),
  wheel speed ``w = 0.45 a + 0.05`` m/s, ``v = (w_l + w_r)/2``, ``omega = (w_r - w_l)/0.25``,
  Euler integration of the unicycle.
- Lidar: 18 rays evenly over [-90, +90] deg of the heading, range 3.5 m, exact ray-circle and
  ray-segment intersection; value ``clip(0.35 / d, 0, 1)``.
- Observation (22): ``[goal_dir, clip(0.3 / goal_dist, 0, 1), v, omega, rays x 18]``.
- Reward: +10 at the goal (distance < 0.5 m), -10 on collision (clearance from the robot
  centre to any surface < 0.2 m), otherwise ``2 (d_prev - d_now) - 0.01``.
- ``terminated`` on success or collision, ``truncated`` after ``max_steps`` (1000);
  ``info["outcome"]`` is ``"success"``, ``"collision"``, ``"timeout"`` or ``None``.
"""

from __future__ import annotations

import math

import numpy as np

from .envs import require_gymnasium

gym = require_gymnasium()
spaces = gym.spaces

__all__ = ["LidarNav2D", "to_rate_values", "ray_distances"]

SIZE, RADIUS, DT = 10.0, 0.18, 0.1
N_RAYS, MAX_RANGE = 18, 3.5
V_MIN, V_MAX, AXLE = 0.05, 0.5, 0.25
OMEGA_MAX = (V_MAX - V_MIN) / AXLE
GOAL_DIST, COLLIDE = 0.5, 0.2
RAY_ANGLES = np.linspace(-math.pi / 2, math.pi / 2, N_RAYS)


def _box_segments(boxes: np.ndarray) -> np.ndarray:
    """Boxes ``[n, 4]`` (cx, cy, hx, hy) -> segments ``[4n, 4]`` (x0, y0, x1, y1)."""
    segs = []
    for cx, cy, hx, hy in boxes:
        x0, x1, y0, y1 = cx - hx, cx + hx, cy - hy, cy + hy
        segs += [(x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)]
    return np.array(segs, dtype=np.float64).reshape(-1, 4)


WALLS = np.array([(0, 0, SIZE, 0), (SIZE, 0, SIZE, SIZE), (SIZE, SIZE, 0, SIZE),
                  (0, SIZE, 0, 0)], dtype=np.float64)


def ray_distances(pos, heading: float, circles: np.ndarray, boxes: np.ndarray,
                  angles=RAY_ANGLES, max_range: float = MAX_RANGE) -> np.ndarray:
    """Exact distance along each ray (``heading + angles``) to the nearest circle ``[n, 3]``
    (cx, cy, r), box ``[m, 4]`` (cx, cy, hx, hy) or wall, capped at ``max_range``."""
    p = np.asarray(pos, dtype=np.float64)
    th = heading + np.asarray(angles)
    d = np.stack([np.cos(th), np.sin(th)], -1)  # [R, 2]
    best = np.full(len(th), max_range)
    if len(circles):
        c = circles[:, :2] - p  # [n, 2]
        b = d @ c.T  # [R, n]  (d . (c - p))
        cc = (c ** 2).sum(1) - circles[:, 2] ** 2  # [n]
        disc = b ** 2 - cc
        ok = disc >= 0
        sq = np.sqrt(np.where(ok, disc, 0.0))
        t1, t2 = b - sq, b + sq
        t = np.where(t1 >= 0, t1, t2)
        t = np.where(ok & (t >= 0), t, np.inf)
        best = np.minimum(best, t.min(1))
    segs = np.concatenate([WALLS, _box_segments(boxes)]) if len(boxes) else WALLS
    a, e = segs[:, :2], segs[:, 2:] - segs[:, :2]  # [S, 2]
    denom = d[:, None, 0] * e[None, :, 1] - d[:, None, 1] * e[None, :, 0]  # [R, S]
    ap = a - p
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ap[None, :, 0] * e[None, :, 1] - ap[None, :, 1] * e[None, :, 0]) / denom
        u = (ap[None, :, 0] * d[:, None, 1] - ap[None, :, 1] * d[:, None, 0]) / denom
    hit = (np.abs(denom) > 1e-12) & (t >= 0) & (u >= 0) & (u <= 1)
    t = np.where(hit, t, np.inf)
    return np.minimum(best, t.min(1))


def clearance(pos, circles: np.ndarray, boxes: np.ndarray) -> float:
    """Distance from ``pos`` to the nearest surface (negative inside an obstacle)."""
    x, y = pos
    best = min(x, SIZE - x, y, SIZE - y)
    if len(circles):
        best = min(best, float((np.hypot(circles[:, 0] - x, circles[:, 1] - y)
                                - circles[:, 2]).min()))
    if len(boxes):
        dx = np.abs(x - boxes[:, 0]) - boxes[:, 2]
        dy = np.abs(y - boxes[:, 1]) - boxes[:, 3]
        out = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
        inside = np.minimum(np.maximum(dx, dy), 0)
        best = min(best, float((out + inside).min()))
    return float(best)


def to_rate_values(obs) -> np.ndarray:
    """22-float observation -> 24 rate values in [0, 1]: goal direction split into its
    positive and negative parts / pi, goal proximity, v / 0.5, omega split into +/- parts / 2,
    18 ray values."""
    o = np.asarray(obs, dtype=np.float32)
    g, w = o[..., 0], o[..., 3]
    parts = [np.maximum(g, 0) / math.pi, np.maximum(-g, 0) / math.pi, o[..., 1], o[..., 2] / 0.5,
             np.maximum(w, 0) / 2.0, np.maximum(-w, 0) / 2.0]
    return np.clip(np.concatenate([np.stack(parts, -1), o[..., 4:]], -1), 0, 1).astype(
        np.float32)


class LidarNav2D(gym.Env):
    """Goal reaching with obstacle avoidance from lidar (module docstring).

    Args:
        n_obstacles: ``(low, high)`` inclusive range of the obstacle count, or an int.
        dynamic: 3 obstacles move and reflect off the walls.
        max_steps: truncation horizon.
    """

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, n_obstacles=(6, 10), dynamic: bool = False, max_steps: int = 1000,
                 render_mode=None):
        if isinstance(n_obstacles, int):
            n_obstacles = (n_obstacles, n_obstacles)
        lo, hi = n_obstacles
        if not 0 <= lo <= hi:
            raise ValueError(f"n_obstacles must be (low, high) with 0 <= low <= high, got "
                             f"{n_obstacles!r}")
        if not isinstance(max_steps, int) or max_steps <= 0:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        self.n_obstacles, self.dynamic, self.max_steps = (lo, hi), bool(dynamic), max_steps
        self.render_mode = render_mode
        low = np.array([-math.pi, 0, V_MIN, -OMEGA_MAX] + [0] * N_RAYS, dtype=np.float32)
        high = np.array([math.pi, 1, V_MAX, OMEGA_MAX] + [1] * N_RAYS, dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.circles = np.zeros((0, 3))
        self.boxes = np.zeros((0, 4))

    # ---- world generation ------------------------------------------------------------
    def _layout(self):
        rng = self.np_random
        m = 1.0
        while True:
            start = rng.uniform(m, SIZE - m, 2)
            goal = rng.uniform(m, SIZE - m, 2)
            if np.hypot(*(goal - start)) >= 3.0:
                break
        n = int(rng.integers(self.n_obstacles[0], self.n_obstacles[1] + 1))
        circles, boxes = [], []
        tries = 0
        while len(circles) + len(boxes) < n and tries < 10_000:
            tries += 1
            c = rng.uniform(0.5, SIZE - 0.5, 2)
            if rng.random() < 0.5:
                r = rng.uniform(0.3, 0.8)
                cand_c, cand_b = np.array([[*c, r]]), np.zeros((0, 4))
            else:
                h = rng.uniform(0.4, 1.2, 2) / 2
                cand_c, cand_b = np.zeros((0, 3)), np.array([[*c, *h]])
            if min(clearance(start, cand_c, cand_b), clearance(goal, cand_c, cand_b)) < 0.6:
                continue
            (circles if len(cand_c) else boxes).append((cand_c if len(cand_c) else cand_b)[0])
        self.circles = np.array(circles).reshape(-1, 3)
        self.boxes = np.array(boxes).reshape(-1, 4)
        self.pos, self.goal = start, goal
        self.heading = float(rng.uniform(-math.pi, math.pi))
        self.vel = np.zeros((len(self.circles) + len(self.boxes), 2))
        if self.dynamic and len(self.vel):
            k = min(3, len(self.vel))
            idx = rng.choice(len(self.vel), k, replace=False)
            ang = rng.uniform(-math.pi, math.pi, k)
            spd = rng.uniform(0.1, 0.3, k)
            self.vel[idx] = np.stack([np.cos(ang), np.sin(ang)], -1) * spd[:, None]

    def _move_obstacles(self):
        nc = len(self.circles)
        for i, v in enumerate(self.vel):
            if not v.any():
                continue
            obj = self.circles[i] if i < nc else self.boxes[i - nc]
            ext = (obj[2], obj[2]) if i < nc else (obj[2], obj[3])
            for ax in range(2):
                obj[ax] += v[ax] * DT
                if obj[ax] - ext[ax] < 0 or obj[ax] + ext[ax] > SIZE:
                    v[ax] = -v[ax]
                    obj[ax] = np.clip(obj[ax], ext[ax], SIZE - ext[ax])

    # ---- gym API -----------------------------------------------------------------------
    def _obs(self):
        delta = self.goal - self.pos
        dist = float(np.hypot(*delta))
        gdir = (math.atan2(delta[1], delta[0]) - self.heading + math.pi) % (2 * math.pi) - math.pi
        rays = np.clip(0.35 / np.maximum(ray_distances(self.pos, self.heading, self.circles,
                                                       self.boxes), 1e-9), 0, 1)
        obs = np.concatenate([[gdir, min(0.3 / max(dist, 1e-9), 1.0), self.v, self.omega],
                              rays]).astype(np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._layout()
        self.v, self.omega, self.t = V_MIN, 0.0, 0
        self.dist = float(np.hypot(*(self.goal - self.pos)))
        return self._obs(), {"goal_dist": self.dist}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), 0.0, 1.0)
        wl, wr = a * (V_MAX - V_MIN) + V_MIN
        self.v, self.omega = (wl + wr) / 2, (wr - wl) / AXLE
        self.pos = self.pos + self.v * DT * np.array([math.cos(self.heading),
                                                       math.sin(self.heading)])
        self.heading = (self.heading + self.omega * DT + math.pi) % (2 * math.pi) - math.pi
        if self.dynamic:
            self._move_obstacles()
        self.t += 1
        dist = float(np.hypot(*(self.goal - self.pos)))
        outcome = None
        if dist < GOAL_DIST:
            reward, outcome = 10.0, "success"
        elif clearance(self.pos, self.circles, self.boxes) < COLLIDE:
            reward, outcome = -10.0, "collision"
        else:
            reward = 2.0 * (self.dist - dist) - 0.01
        self.dist = dist
        terminated = outcome is not None
        truncated = not terminated and self.t >= self.max_steps
        if truncated:
            outcome = "timeout"
        return self._obs(), float(reward), terminated, truncated, {"outcome": outcome,
                                                                   "goal_dist": dist}
