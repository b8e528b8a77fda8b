"""Spiking controllers for gymnasium tasks: PopSAN actor, TD3 training, evaluation under
degradations, and the :class:`LidarNav2D` obstacle-avoidance environment.

gymnasium is imported lazily (``pip install 'membra[control]'``); MuJoCo tasks additionally
need mujoco (same extra). ``membra/LidarNav2D-v0`` is registered with gymnasium when gymnasium
is installed.
"""

from __future__ import annotations

from .actor import PopSANActor, PopulationDecoder, PopulationEncoder, SpikingLayer
from .checkpoint import load_actor, load_config, pretrained_path, save_actor
from .envs import make_env, register_envs
from .evaluate import evaluate, rollout_returns, run_episode
from .normalizer import ObsNormalizer
from .td3 import Critic, ReplayBuffer, TD3Config, train_td3

__all__ = ["PopSANActor", "PopulationEncoder", "PopulationDecoder", "SpikingLayer",
           "ObsNormalizer", "TD3Config", "ReplayBuffer", "Critic", "train_td3", "make_env",
           "register_envs", "save_actor", "load_actor", "load_config", "pretrained_path",
           "rollout_returns", "run_episode", "evaluate", "LidarNav2D"]

try:  # register membra/LidarNav2D-v0 when gymnasium is present
    register_envs()
except ImportError:  # pragma: no cover
    pass


def __getattr__(name):
    if name == "LidarNav2D":
        from .lidar_nav import LidarNav2D
        return LidarNav2D
    raise AttributeError(f"module 'membra.control' has no attribute {name!r}")
