"""Seeding an OGBench env for one episode, shared by the dataset collectors (envs/collectors.py,
envs/locomotion.py) and the evaluation envs (envs/vector.py), so that an episode is a function of its
seed wherever it runs."""

from __future__ import annotations

import numpy as np


def seed_everything(env, episode_seed: int) -> None:
    """OGBench mixes env.np_random, the action space RNG and the global NumPy RNG; seed all three."""
    np.random.seed(episode_seed)
    env.unwrapped.action_space.seed(episode_seed)


def episode_seed(seed: int, episode_index: int) -> int:
    """Seed of episode `episode_index` of a generation run with `seed`: a function of the pair only, so an
    episode does not depend on sharding, and `python -m envs.locomotion success` can replay a dataset's
    episodes without importing the generator (which imports the collectors)."""
    return int(np.random.SeedSequence([seed, episode_index]).generate_state(1)[0])
