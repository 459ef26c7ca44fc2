"""Vectorised evaluation against a fake env with known episode lengths and a counting fake sampler."""
import jax
import numpy as np
import pytest

from envs.vector import StepResult
from harness.evaluate import evaluate, per_step_profile

K = 4  # flow steps of the fake sampler


class LineEnvs:
    """Env i of a wave walks +action per step; its episode ends after `lengths[seed % len]` steps;
    success iff the seed is even. Finished envs, and envs a reset gave no seed, are frozen, as
    envs.vector promises."""

    def __init__(self, num_envs, lengths=(3, 5, 2, 7), max_steps=10):
        self.num_envs, self.observation_dim, self.action_dim = num_envs, 1, 1
        self.max_episode_steps = max_steps
        self.lengths = lengths
        self.renders = []

    def reset(self, seeds):
        self.seeds = np.zeros(self.num_envs, int)
        self.seeds[:len(seeds)] = seeds
        self.t = np.zeros(self.num_envs, int)
        self.done = np.arange(self.num_envs) >= len(seeds)
        self.obs = np.zeros((self.num_envs, 1), np.float32)
        return self.obs.copy()

    def step(self, actions):
        running = ~self.done
        self.t[running] += 1
        self.obs[running] += actions[running]
        limit = np.array([self.lengths[s % len(self.lengths)] for s in self.seeds])
        just = running & (self.t >= limit)
        self.done |= just
        rewards = np.where(running, 1.0, 0.0).astype(np.float32)
        success = self.done & (self.seeds % 2 == 0)
        return StepResult(self.obs.copy(), rewards, self.done.copy(), success, just)

    def render(self, indices):
        self.renders.append(list(indices))
        return [np.full((8, 8, 3), self.t[i], np.uint8) for i in indices]


class CountingSampler:
    def __init__(self):
        self.calls, self.batch_sizes = 0, []

    def __call__(self, observations, key, beta):
        self.calls += 1
        self.batch_sizes.append(len(observations))
        n = len(observations)
        norms = np.full((K, n), float(beta), np.float32)
        diag = {'velocity_norm': np.ones((K, n), np.float32), 'grad_q_norm': norms, 'guidance_norm': norms,
                'nonfinite_fallbacks': np.int32(0)}
        return np.ones((n, 1), np.float32), diag


def test_one_batched_call_per_env_step_and_correct_episode_records():
    envs, sampler = LineEnvs(num_envs=3), CountingSampler()
    result = evaluate(sampler, envs, beta=2.0, num_episodes=5, key=jax.random.PRNGKey(0), env_seed_base=0)
    lengths = [3, 5, 2, 7, 3]       # env seeds 0..4
    # Wave 1 (episodes 0-2) lasts max(3,5,2) steps; wave 2 (episodes 3-4, third env not reset) max(7,3).
    assert sampler.calls == 5 + 7
    assert set(sampler.batch_sizes) == {3}
    assert [e['length'] for e in result.episodes] == lengths
    assert [e['success'] for e in result.episodes] == [True, False, True, False, True]
    assert [e['return'] for e in result.episodes] == [float(n) for n in lengths]
    assert len(result.trace.episode) == sum(lengths)       # one diag row per live env step, none for frozen envs
    arrays = result.trace.arrays()
    assert arrays['guidance_norm'].shape == (sum(lengths), K) and arrays['guidance_norm'].dtype == np.float16
    assert all(e['mean_guidance_norm'] == pytest.approx(2.0) for e in result.episodes)


def test_videos_only_for_the_first_episodes_with_frame_skip():
    envs = LineEnvs(num_envs=2, lengths=(6, 4))
    result = evaluate(CountingSampler(), envs, beta=0.0, num_episodes=4, key=jax.random.PRNGKey(1),
                      video_episodes=1, frame_skip=2)
    assert list(result.videos) == [0]
    # initial frame, then every 2nd step, and always the last step.
    assert result.video_steps[0] == [0, 2, 4, 6]
    assert all(indices == [0] for indices in envs.renders)


def test_profile_averages_per_env_step_and_flow_step():
    result = evaluate(CountingSampler(), LineEnvs(num_envs=2), beta=1.5, num_episodes=2, key=jax.random.PRNGKey(2))
    prof = per_step_profile(result.trace.arrays())
    assert prof['guidance_norm/by_flow_step'].shape == (K,)
    np.testing.assert_allclose(prof['guidance_norm/by_env_step'], 1.5)
