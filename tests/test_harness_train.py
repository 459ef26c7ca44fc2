"""Training loop: chunking, several seeds at once, and resume == uninterrupted."""
import jax
import numpy as np
from hypothesis import given, strategies as st

from agents import PRESETS, QFQLAgent
from harness.checkpoints import find_checkpoint, restore_checkpoint, save_checkpoint
from harness.train import Trainer, align, chunk_boundaries, create_agents, grad_norm_alarms, select_seed

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


def test_grad_norm_alarm_reads_the_chunk_maximum_above_100():
    alarms = grad_norm_alarms([{'actor/grad_norm': 50.0, 'actor/grad_norm_max': 90.0, 'critic/grad_norm': 60.0,
                                'critic/grad_norm_max': 400.0},
                               {'critic/grad_norm_max': float('nan')}],
                              [0, 1])
    assert len(alarms) == 2 and 'critic/grad_norm_max' in alarms[0] and 'seed 1' in alarms[1]
