"""Exported (shipped) checkpoints: an agent comes back acting as it did, whichever agent it is, and a
damaged params.msgpack is one line."""
import jax
import numpy as np
import pytest
from flax import serialization

from agents import PRESETS, FQLAgent, QFQLAgent
from agents.training import create_agents, select_seed
from harness.checkpoints import PARAMS_FILE, export_params, restore_checkpoint
from harness.errors import UsageError

OBS_DIM, ACT_DIM = 3, 2


def _agents(agent_cls, seed):
    return create_agents(agent_cls, [seed], np.zeros((1, OBS_DIM), np.float32), np.zeros((1, ACT_DIM), np.float32),
                         PRESETS['tiny'])


def _export(agent_cls, tmp_path):
    trained = _agents(agent_cls, 0)
    out = tmp_path / agent_cls.__name__
    export_params(out, trained, {'task': {'env_id': 'toy'}, 'agent': agent_cls.__name__, 'preset': 'tiny'}, {})
    return trained, out


@pytest.mark.slow
@pytest.mark.parametrize('agent_cls', [QFQLAgent, FQLAgent])
def test_an_exported_agent_acts_as_it_did(agent_cls, tmp_path):
    trained, out = _export(agent_cls, tmp_path)
    # Restored into agents built from another seed: every network acting reads must come from the file.
    restored = restore_checkpoint(out, _agents(agent_cls, 1), 'the toy task')
    observations = jax.random.normal(jax.random.PRNGKey(2), (4, OBS_DIM))
    noise = jax.random.normal(jax.random.PRNGKey(3), (4, ACT_DIM))
    # At β = 1 QFQL's actions depend on its actor and its critic both.
    want, _ = select_seed(trained, 0).actions_from_noise(observations, noise, 1.0)
    got, _ = select_seed(restored, 0).actions_from_noise(observations, noise, 1.0)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.slow
def test_a_cut_or_swapped_params_file_is_one_line(tmp_path):
    _, out = _export(QFQLAgent, tmp_path)
    whole = (out / PARAMS_FILE).read_bytes()
    narrower = serialization.to_bytes(jax.tree.map(lambda x: np.asarray(x)[..., :1], serialization.msgpack_restore(whole)))
    template = _agents(QFQLAgent, 1)
    for damaged in (whole[:len(whole) // 2], b'', b'\x01', narrower):
        (out / PARAMS_FILE).write_bytes(damaged)
        with pytest.raises(UsageError, match=f'{out / PARAMS_FILE} is damaged') as error:
            restore_checkpoint(out, template, 'the toy task')
        assert '\n' not in str(error.value)
