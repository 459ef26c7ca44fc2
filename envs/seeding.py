"""Seeding an OGBench env for one episode, shared by the dataset collectors (envs/collectors.py,
envs/locomotion.py) and the evaluation envs (envs/vector.py), so that an episode is a function of its
seed wherever it runs."""

from __future__ import annotations

import numpy as np


def seed_everything(env, episode_seed: int) -> None:
    """OGBench mixes env.np_random, the action space RNG and the global NumPy RNG; seed all three."""
    np.random.seed(episode_seed)
    env.unwrapped.action_space.seed(episode_seed)
