"""The SAC training of the locomotion experts (tools/experts.py) and the shipped ant expert it produced:
the expert walks where it is told, the tanh-Gaussian density is right, and training resumes from its
checkpoint and exports a card that records how it was trained."""

from __future__ import annotations

import dataclasses
import json

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import ogbench.online_locomotion  # noqa: F401  (registers online-ant-v0)
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tools import experts, sac

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


@pytest.fixture(scope='module')
def ant_expert():
    return experts.load_expert('ant')


def _walk(expert, direction: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """Displacement of the ant on OGBench's online ant env when the expert is told to walk along `direction`."""
    env = gymnasium.make('online-ant-v0').unwrapped
    env.reset(seed=seed)
    start = env.data.qpos[:2].copy()
    for _ in range(steps):
        state = np.concatenate([env.data.qpos, env.data.qvel])
        env.step(expert.act(experts.ant_direction_ob(state, direction)))
    return env.data.qpos[:2] - start


@pytest.mark.parametrize('angle', [0.0, 2.3, 4.2])
def test_shipped_ant_expert_walks_in_the_commanded_direction(ant_expert, angle):
    direction = np.array([np.cos(angle), np.sin(angle)])
    displacement = _walk(ant_expert, direction, steps=100, seed=0)  # 10 s at 10 Hz
    along = displacement @ direction
    across = abs(displacement @ np.array([-direction[1], direction[0]]))
    assert along > 3.0, f'walked only {along:.2f} m along the commanded direction in 10 s'
    assert across < 0.5 * along


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = jnp.array([[0.3, -1.2]]), jnp.array([[-0.5, 0.2]])
    action, logp = sac.tanh_gaussian_sample(mean, log_std, jax.random.PRNGKey(3))
    pre = jnp.arctanh(action)
    std = jnp.exp(log_std)
    gauss = -0.5 * ((pre - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    expected = jnp.sum(gauss - jnp.log(1 - action**2), -1)
    assert np.allclose(logp, expected, atol=1e-3)


@pytest.mark.slow
def test_sac_training_resumes_from_its_checkpoint_and_exports_a_card_of_it(tmp_path, monkeypatch):
    tiny = dataclasses.replace(
        experts.EXPERTS['ant'], sac=dataclasses.replace(sac.SACConfig(), actor_hidden=(16,), critic_hidden=(16,),
                                                     batch_size=8),
        seed_steps=32,
    )
    first = experts.train(tiny, 64, tmp_path, num_envs=4, checkpoint_every=32, eval_every=10**9, eval_episodes=1)
    assert first['step'] == 64 and np.isfinite(first['critic_loss'])
    resumed = experts.train(tiny, 96, tmp_path, num_envs=4, checkpoint_every=32, eval_every=10**9, eval_episodes=1)
    log = json.loads((tmp_path / 'progress.json').read_text())['log']
    assert resumed['step'] == 96 and [e['step'] for e in log] == [32, 64, 96]

    # A fresh clone has no run folder, only the committed snapshot (no replay buffer): training continues from
    # the snapshot's step and agent state, with the buffer refilled before any update.
    step = sac.copy_checkpoint(tmp_path, tmp_path / 'snapshot')
    assert step == 96 and sorted(p.name for p in (tmp_path / 'snapshot').iterdir()) == [
        'agent-96.msgpack', 'config.json', 'progress.json']
    fresh = tmp_path / 'fresh-clone-run'
    carried = experts.train(tiny, 160, fresh, num_envs=4, checkpoint_every=32, eval_every=10**9, eval_episodes=1,
                            snapshot_dir=tmp_path / 'snapshot')
    assert carried['step'] == 160 and np.isfinite(carried['critic_loss'])
    assert [e['step'] for e in json.loads((fresh / 'progress.json').read_text())['log']] == [32, 64, 96, 128, 160]

    # The export: the actor of the last checkpoint, and a card that says how to train it again.
    monkeypatch.setattr(experts, 'EXPORT_EVAL_EPISODES', 1)
    weights = experts.export_expert(tiny, tmp_path, out_dir=tmp_path / 'export')
    card = json.loads(weights.with_suffix('.json').read_text())
    assert weights.stat().st_size > 0 and card['actor_hidden'] == [16]
    assert card['env_steps_trained'] == 96 and card['env_id'] == tiny.env_id
    assert card['train_command'] == 'python -m tools.experts train ant --steps 96 --num-envs 4'
    assert card['evaluation']['episodes'] == 1 and [e['step'] for e in card['progress_log']] == [32, 64, 96]


@settings(max_examples=40, deadline=None)
@given(first=st.integers(1, 12), added=st.integers(0, 30), second=st.integers(1, 12), more=st.integers(0, 15))
@example(first=4, added=10, second=4, more=3)  # a wrapped ring resumed at its own capacity
def test_a_restored_replay_buffer_keeps_the_newest_transitions_and_overwrites_the_oldest(first, added, second, more):
    """A long run's ring buffer wraps, and a resumed run may build it with another capacity (its --steps
    changed): after restoring, the buffer must hold exactly the newest transitions, and every later add
    must evict the oldest one, as if it had been that size all along."""
    def add(buffer, values):
        for v in values:
            buffer.add(observations=[v], actions=[v], rewards=v, masks=1.0, next_observations=[v])
        return buffer

    def filled(capacity, values):
        return add(sac.ReplayBuffer(capacity, obs_dim=1, action_dim=1), values)

    def contents(buffer):
        return sorted(buffer.data['rewards'][: buffer.size].tolist())

    saved = filled(first, range(added))
    resumed = sac.ReplayBuffer(second, obs_dim=1, action_dim=1)
    resumed.restore({k: v[: saved.size] for k, v in saved.data.items()}, saved.pointer)
    add(resumed, range(added, added + more))
    kept_by_the_first_run = list(range(added))[-first:] if added else []
    newest = (kept_by_the_first_run + list(range(added, added + more)))[-second:]
    assert contents(resumed) == [float(v) for v in newest]
    assert np.array_equal(resumed.data['observations'][: resumed.size, 0], resumed.data['rewards'][: resumed.size])
    if second == first:  # same capacity: the very same ring, so sampling continues as if never stopped
        continued = filled(first, range(added + more))
        assert all(np.array_equal(resumed.data[k], continued.data[k]) for k in sac.ReplayBuffer.KEYS)
        assert (resumed.size, resumed.pointer) == (continued.size, continued.pointer)


def test_the_antball_training_env_builds_and_steps():
    """OGBench's AntBallEnv renders in its constructor, so building it without a render mode fails."""
    env = experts.make_online_env(experts.EXPERTS['antball'])
    ob, _ = env.reset(seed=0)
    next_ob, reward, *_ = env.step(env.action_space.sample())
    assert ob.shape == next_ob.shape == (42,) and np.isfinite(reward)
