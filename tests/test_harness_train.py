"""Training loop: chunking, several seeds at once, and resume == uninterrupted."""
import jax
import numpy as np
import pytest
from hypothesis import given, strategies as st

from agents import PRESETS, QFQLAgent
from harness.checkpoints import find_checkpoint, restore_checkpoint, save_checkpoint
from agents.training import create_agents, select_seed
from harness.config import align
from harness.train import Trainer, chunk_boundaries
from harness.watch import DivergenceWatch, q_bounds

SEEDS = [3, 4]
CHUNK = 50


def _dataset(n=256, obs_dim=3, act_dim=2):
    rng = np.random.default_rng(0)
    return {'observations': rng.normal(size=(n, obs_dim)).astype(np.float32),
            'actions': rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            'rewards': rng.normal(size=n).astype(np.float32), 'masks': np.ones(n, np.float32),
            'next_observations': rng.normal(size=(n, obs_dim)).astype(np.float32)}


def _fresh(dataset):
    return create_agents(QFQLAgent, SEEDS, dataset['observations'][:1], dataset['actions'][:1], PRESETS['tiny'])


def _train(trainer, start, end):
    for first, count in chunk_boundaries(start, end, CHUNK):
        trainer.run_chunk(first, count)


@given(st.integers(0, 500), st.integers(0, 500), st.integers(1, 64))
def test_chunks_cover_the_range_and_end_on_multiples(start, length, chunk):
    pieces = chunk_boundaries(start, start + length, chunk)
    assert sum(c for _, c in pieces) == length
    assert all((f + c) % chunk == 0 for f, c in pieces[:-1])
    assert align(length, chunk) % chunk == 0 and align(length, chunk) >= length


@pytest.mark.slow
def test_resumed_run_reaches_the_same_parameters(tmp_path):
    dataset = _dataset()
    straight = Trainer(_fresh(dataset), dataset, SEEDS)
    _train(straight, 0, 2 * CHUNK)

    first_half = Trainer(_fresh(dataset), dataset, SEEDS)
    _train(first_half, 0, CHUNK)
    save_checkpoint(tmp_path, CHUNK, first_half.agents, {'task': {'env_id': 'random'}})
    restored = restore_checkpoint(find_checkpoint(tmp_path), _fresh(dataset), 'random')
    second_half = Trainer(restored, dataset, SEEDS)
    _train(second_half, CHUNK, 2 * CHUNK)

    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), straight.agents, second_half.agents)
    assert all(jax.tree.leaves(same))


@pytest.mark.slow
def test_seeds_train_independently():
    dataset = _dataset()
    both = Trainer(_fresh(dataset), dataset, SEEDS)
    both.run_chunk(0, CHUNK)
    alone = Trainer(create_agents(QFQLAgent, SEEDS[1:], dataset['observations'][:1], dataset['actions'][:1],
                                  PRESETS['tiny']), dataset, SEEDS[1:])
    report = alone.run_chunk(0, CHUNK)
    a = jax.tree.leaves(select_seed(both.agents, 1).params)
    b = jax.tree.leaves(select_seed(alone.agents, 0).params)
    assert all(np.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    assert {'actor/loss', 'critic/loss', 'critic/q_mean', 'actor/grad_norm', 'critic/grad_norm'} <= set(report.infos[0])


def test_q_bounds_are_the_discounted_sums_the_rewards_allow():
    assert q_bounds(np.array([-1.0, 0.0]), 0.99) == pytest.approx((-100.0, 0.0))
    assert q_bounds(np.array([0.5, 2.0]), 0.9) == pytest.approx((0.5, 20.0))


def _info(q_mean, grad_norm, q_min=None, q_max=None):
    return {'critic/q_mean': q_mean, 'critic/q_min': q_mean if q_min is None else q_min,
            'critic/q_max': q_mean if q_max is None else q_max, 'critic/grad_norm': grad_norm}


def test_divergence_watch_ignores_a_healthy_run_whose_norms_grow_with_q():
    """The shape of a cube-single run where guidance worked: |Q| and the critic gradient norm grow
    together (2 -> 23 while Q went -5 -> -53), with single-update maxima far above 100."""
    watch = DivergenceWatch([0], q_bounds(np.array([-1.0, 0.0]), 0.99))
    for step, q in enumerate(np.linspace(-5, -53, 20)):
        info = {**_info(q, 0.35 * (1 + abs(q)), q_min=1.4 * q, q_max=1.0), 'critic/grad_norm_max': 250.0}
        assert watch.check(step, [info]) == []


def test_divergence_watch_flags_q_outside_the_reward_range_and_sustained_gradient_growth():
    watch = DivergenceWatch([3, 4], q_bounds(np.array([-1.0, 0.0]), 0.99))
    found = watch.check(1, [_info(-50.0, 10.0, q_min=-130.0), _info(-20.0, 5.0, q_max=5.0)])
    assert [kind for kind, _ in found] == ['q_out_of_range'] and 'seed 3' in found[0][1]
    watch = DivergenceWatch([0], (-100.0, 0.0))
    kinds = [[k for k, _ in watch.check(step, [_info(-50.0, norm)])]
             for step, norm in enumerate([10.0] * 5 + [45.0, 60.0, 50.0, 80.0, 70.0])]
    assert kinds[:9] == [[]] * 9 and kinds[9] == ['critic_grad_growth']
    one_spike = DivergenceWatch([0], (-100.0, 0.0))
    assert all(one_spike.check(s, [_info(-50.0, n)]) == [] for s, n in enumerate([10.0] * 5 + [80.0] + [10.0] * 6))
    drift = DivergenceWatch([0], (-100.0, 0.0))     # a healthy run's slow 2-3x drift stays quiet
    assert all(drift.check(s, [_info(-50.0, n)]) == [] for s, n in enumerate(np.linspace(10.0, 25.0, 40)))
