"""Environment construction for membra's control tasks (gymnasium imported lazily)."""

from __future__ import annotations

__all__ = ["require_gymnasium", "make_env", "register_envs", "missing_dependency"]

LIDAR_ID = "membra/LidarNav2D-v0"


def require_gymnasium():
    try:
        import gymnasium
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("membra.control needs gymnasium: pip install 'membra[control]'") from e
    return gymnasium


def register_envs() -> None:
    """Register ``membra/LidarNav2D-v0`` with gymnasium (idempotent)."""
    gym = require_gymnasium()
    if LIDAR_ID not in gym.registry:
        gym.register(id=LIDAR_ID, entry_point="membra.control.lidar_nav:LidarNav2D",
                     max_episode_steps=None)


def make_env(env_id: str, **kwargs):
    """``gymnasium.make(env_id)``; MuJoCo tasks need ``membra[control]`` (mujoco)."""
    gym = require_gymnasium()
    register_envs()
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a string such as 'Pendulum-v1', got {env_id!r}")
    try:
        return gym.make(env_id, **kwargs)
    except (gym.error.DependencyNotInstalled, ImportError) as e:
        raise missing_dependency(gym, env_id, e) from e
    except (gym.error.NameNotFound, gym.error.VersionNotFound,
            gym.error.DeprecatedEnv) as e:
        raise ValueError(f"unknown gymnasium environment {env_id!r}: {e}") from None


def missing_dependency(gym, env_id: str, err: Exception) -> ImportError:
    """The one-line ``ImportError`` for an environment whose simulator cannot be imported:
    it names the task, the package that failed to import (gymnasium's
    ``DependencyNotInstalled`` keeps it on ``__cause__``) and, for MuJoCo tasks (entry point
    under ``gymnasium.envs.mujoco``: mujoco, and glfw and imageio which gymnasium's MuJoCo
    renderer imports), the extra that installs them."""
    name = getattr(err, "name", None) or getattr(err.__cause__, "name", None)
    what = f"the package {name!r} could not be imported" if name else str(err)
    entry = getattr(gym.spec(env_id), "entry_point", "")
    if isinstance(entry, str) and entry.startswith("gymnasium.envs.mujoco"):
        return ImportError(f"{env_id} is a MuJoCo task and needs mujoco (with glfw and "
                           f"imageio), but {what}: pip install 'membra[control]'")
    return ImportError(f"{env_id} needs a package that is not installed: {what}")
