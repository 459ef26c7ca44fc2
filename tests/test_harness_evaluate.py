"""The evaluation rollout against fake envs with known episode lengths: episode records, the refilling
pool, videos, and the equality of a whole sweep in one rollout with its groups run one by one."""
import jax
import numpy as np
import pytest

from agents import AGENTS
from agents.config import resolve_config
from agents.training import create_agents
from envs.vector import StepResult
from harness.evaluate import EpisodeGroup, group_key, make_policy, per_step_profile, rollout

K = 4  # flow steps of the fake policy


class LineEnvs:
    """Env i walks +action per step from 0; the episode started with seed s ends after
    `lengths[s % len]` steps (or once its position leaves [-limit, limit], when `limit` is set);
    success iff the seed is even and the position ends above 0. Reward is the position, so a
    return depends on every action. Finished envs are frozen until started again, or restart at
    once with the next seed given to `step`, as envs.vector promises."""

    def __init__(self, num_envs, lengths=(3, 5, 2, 7), max_steps=10, limit=None, action_dim=1):
        self.num_envs, self.observation_dim, self.action_dim = num_envs, action_dim, action_dim
        self.max_episode_steps = max_steps
        self.lengths, self.limit = lengths, limit
        self.seeds = np.zeros(num_envs, int)
        self.t = np.zeros(num_envs, int)
        self.done = np.ones(num_envs, bool)
        self.obs = np.zeros((num_envs, action_dim), np.float32)
        self.starts, self.restarts, self.renders, self.stepped = [], [], [], []

    def start(self, indices, seeds):
        self.starts.append((list(indices), list(seeds)))
        for i, s in zip(indices, seeds):
            self.seeds[i], self.t[i], self.done[i] = s, 0, False
            self.obs[i] = 0.0
        return self.obs[list(indices)].copy()

    def step(self, actions, next_seeds=None):
        running = ~self.done
        self.stepped.append(np.flatnonzero(running).tolist())
        self.t[running] += 1
        self.obs[running] += actions[running]
        limit = np.array([self.lengths[s % len(self.lengths)] for s in self.seeds])
        just = running & ((self.t >= np.minimum(limit, self.max_episode_steps)) |
                          ((np.abs(self.obs).max(axis=1) > self.limit) if self.limit else False))
        self.done |= just
        rewards = np.where(running, self.obs.sum(axis=1), 0.0).astype(np.float32)
        success = self.done & (self.seeds % 2 == 0) & (self.obs.sum(axis=1) > 0)
        result = StepResult(self.obs.copy(), rewards, self.done.copy(), success, just)
        next_seeds = np.full(self.num_envs, -1) if next_seeds is None else np.asarray(next_seeds)
        for i in np.flatnonzero(just & (next_seeds >= 0)):
            self.restarts.append((int(i), int(next_seeds[i])))
            self.seeds[i], self.t[i], self.done[i], self.obs[i] = next_seeds[i], 0, False, 0.0
            result.observations[i] = 0.0
        return result

    def render(self, indices):
        self.renders.append(list(indices))
        return [np.full((8, 8, 3), self.t[i], np.uint8) for i in indices]


class CountingPolicy:
    """Action 1 everywhere; the diag norms of a row are its β."""

    def __init__(self):
        self.calls, self.shapes = 0, []

    def __call__(self, observations, keys, episodes, steps, betas):
        self.calls += 1
        self.shapes.append(observations.shape[:2])
        s, m = betas.shape
        norms = np.broadcast_to(betas[:, None, :], (s, K, m)).astype(np.float32)
        diag = {'velocity_norm': np.ones((s, K, m), np.float32), 'grad_q_norm': norms, 'guidance_norm': norms}
        return np.ones((s, m, 1), np.float32), diag


def groups_of(betas, seeds, episodes, video_episodes=0):
    return [EpisodeGroup('final', beta, index, episodes, 0, group_key(seed, 7), video_episodes if index == 0 else 0)
            for beta in betas for index, seed in enumerate(seeds)]


def test_records_and_one_policy_call_per_env_step_for_every_live_env():
    envs, policy = LineEnvs(num_envs=3), CountingPolicy()
    (result,), _ = rollout(policy, envs, groups_of([2.0], [0], episodes=5), num_seeds=1)
    lengths = [3, 5, 2, 7, 3]       # env seeds 0..4
    assert [e['length'] for e in result.episodes] == lengths
    assert [e['return'] for e in result.episodes] == [n * (n + 1) / 2 for n in lengths]
    assert [e['success'] for e in result.episodes] == [True, False, True, False, True]
    # Slots refill as soon as an episode ends: episode 3 starts when episode 2 (2 steps) ends, and
    # episode 4 when episode 0 (3 steps) ends; the pool works until the longest chain, 2 + 7 = 9
    # steps. Pending episodes are offered to live slots in order, so episode 3 (offered to slot 0)
    # starts through `start`, and episode 4 restarts slot 0 within its step.
    assert envs.starts == [([0, 1, 2], [0, 1, 2]), ([2], [3])] and envs.restarts == [(0, 4)]
    assert policy.calls == 9 and set(policy.shapes) == {(1, 3)}
    assert sum(len(s) for s in envs.stepped) == sum(lengths)        # no env is stepped after its episode
    assert len(result.trace['episode']) == sum(lengths)             # one diag row per live env step
    assert result.trace['guidance_norm'].shape == (sum(lengths), K)
    assert result.trace['guidance_norm'].dtype == np.float16
    assert all(e['mean_guidance_norm'] == pytest.approx(2.0) for e in result.episodes)


class ChunkPolicy(CountingPolicy):
    """Chunks of h env actions 1, 2, ..., h; records the env steps it was asked to act at. Its ‖v‖ is
    the number of the call, so a trace row says which sample its chunk came from."""

    def __init__(self, horizon):
        super().__init__()
        self.horizon, self.asked_at = horizon, []

    def __call__(self, observations, keys, episodes, steps, betas):
        _, diag = super().__call__(observations, keys, episodes, steps, betas)
        self.asked_at.append(np.asarray(steps).copy())
        s, m = betas.shape
        diag = {**diag, 'velocity_norm': np.full((s, K, m), self.calls, np.float32)}
        return np.broadcast_to(np.arange(1, self.horizon + 1, dtype=np.float32), (s, m, self.horizon)), diag


class TickedLineEnvs(LineEnvs):
    """LineEnvs that note the pool step at which each episode starts (by `start` or within `step`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.episode_starts_at = []

    def start(self, indices, seeds):
        self.episode_starts_at += [len(self.stepped)] * len(indices)
        return super().start(indices, seeds)

    def step(self, actions, next_seeds=None):
        restarted = len(self.restarts)
        result = super().step(actions, next_seeds)
        self.episode_starts_at += [len(self.stepped)] * (len(self.restarts) - restarted)
        return result


def test_chunks_run_open_loop_and_the_sampler_is_called_once_per_chunk():
    envs, policy = TickedLineEnvs(num_envs=2), ChunkPolicy(horizon=3)
    (result,), _ = rollout(policy, envs, groups_of([2.0], [0], episodes=4), num_seeds=1, horizon=3)
    lengths = [3, 5, 2, 7]       # env seeds 0..3
    positions = np.cumsum(np.tile([1, 2, 3], 3))
    assert [e['length'] for e in result.episodes] == lengths
    assert [e['return'] for e in result.episodes] == [float(positions[:n].sum()) for n in lengths]
    # Episodes start only at chunk boundaries of the pool: episodes 0 and 1 at step 0, episode 2 at
    # step 3 (when episode 0 ends, in the same round trip), episode 3 at step 6: episodes 1 and 2 both
    # end at step 5, and the idle pool passes step 5 without a round trip, so episode 3 starts after
    # 5 step calls. The pool samples chunks at steps 0, 3, 6, 9 and 12.
    assert envs.episode_starts_at == [0, 0, 3, 5]
    assert policy.calls == 5
    assert sum(len(s) for s in envs.stepped) == sum(lengths)
    assert len(result.trace['step']) == sum(lengths)             # one diag row per live env step
    # Each row names its place in the chunk, and a chunk's later steps carry the norms of the sample
    # taken at its first step; each episode's next chunk is a new sample.
    trace = result.trace
    np.testing.assert_array_equal(trace['chunk_step'], trace['step'] % 3)
    for episode in range(4):
        rows = np.flatnonzero(trace['episode'] == episode)
        rows = rows[np.argsort(trace['step'][rows])]
        call = trace['velocity_norm'][rows, 0]
        sampled = trace['chunk_step'][rows] == 0
        np.testing.assert_array_equal(call, np.repeat(call[sampled], 3)[:len(rows)])
        assert np.all(np.diff(call[sampled]) > 0)


def test_seeds_own_their_slots_and_betas_reach_their_rows():
    envs, policy = LineEnvs(num_envs=4), CountingPolicy()
    groups = [EpisodeGroup('final', beta, index, 3, 100 * index, group_key(seed, 7))
              for beta in (0.0, 1.5) for index, seed in enumerate((11, 12))]
    results, _ = rollout(policy, envs, groups, num_seeds=2)
    assert set(policy.shapes) == {(2, 2)}
    for outcome in results:
        assert [e['episode'] for e in outcome.episodes] == [0, 1, 2]
        assert all(e['mean_guidance_norm'] == pytest.approx(outcome.group.beta) for e in outcome.episodes)
    # Envs 0-1 belong to seed index 0 and envs 2-3 to seed index 1 (env seeds 100 * index + episode).
    assert envs.starts[0] == ([0, 1, 2, 3], [0, 1, 100, 101])
    started = [(env, env_seed) for indices, env_seeds in envs.starts for env, env_seed in zip(indices, env_seeds)]
    assert len(started + envs.restarts) == 12
    assert all(env // 2 == env_seed // 100 for env, env_seed in started + envs.restarts)


def test_pool_must_split_evenly_over_seeds():
    with pytest.raises(ValueError, match='split evenly'):
        rollout(CountingPolicy(), LineEnvs(num_envs=3), groups_of([0.0], [0, 1], 2), num_seeds=2)


def test_videos_only_for_the_first_episodes_with_frame_skip():
    envs = LineEnvs(num_envs=2, lengths=(6, 4))
    (result,), _ = rollout(CountingPolicy(), envs, groups_of([0.0], [0], 4, video_episodes=1), 1, frame_skip=2)
    assert list(result.videos) == [0]
    # initial frame, then every 2nd step, and always the last step.
    assert result.video_steps[0] == [0, 2, 4, 6]
    assert all(indices == [0] for indices in envs.renders)


def test_profile_averages_per_env_step_and_flow_step():
    (result,), _ = rollout(CountingPolicy(), LineEnvs(num_envs=2), groups_of([1.5], [0], 2), 1)
    prof = per_step_profile(result.trace)
    assert prof['guidance_norm/by_flow_step'].shape == (K,)
    np.testing.assert_allclose(prof['guidance_norm/by_env_step'], 1.5)


@pytest.mark.slow
@pytest.mark.parametrize('horizon', [1, 3])
def test_a_sweep_in_one_rollout_equals_its_groups_one_by_one(horizon):
    """Every (β, seed) group of a sweep, with a real tiny agent of two seeds, gives the same episode
    records whether all groups share the pool or each runs alone through it: an episode's noise
    and start depend on its group and index only, also when it acts in chunks of 3 env actions.
    Episodes end when the walk leaves [-1, 1], so their lengths, returns and successes all depend on
    the sampled actions."""
    action_dim = 2
    config = resolve_config('tiny').replace(horizon=horizon)
    agents = create_agents(AGENTS['qfql'], [3, 4], np.zeros((1, action_dim), np.float32),
                           np.zeros((1, action_dim), np.float32), config)
    policy = make_policy(agents)
    groups = groups_of([0.0, 0.3, 3.0], [3, 4], episodes=5)

    def envs():
        return LineEnvs(num_envs=4, lengths=(30,), max_steps=30, limit=1.0, action_dim=action_dim)

    together, _ = rollout(policy, envs(), groups, num_seeds=2, horizon=horizon)
    for group, joint in zip(groups, together):
        (alone,), _ = rollout(policy, envs(), [group], num_seeds=2, horizon=horizon)
        assert alone.episodes == joint.episodes
        for key in alone.trace:
            np.testing.assert_array_equal(np.sort(alone.trace[key], axis=0), np.sort(joint.trace[key], axis=0))
    lengths = {e['length'] for outcome in together for e in outcome.episodes}
    assert len(lengths) >= 3, 'the walks should end at several different steps'
