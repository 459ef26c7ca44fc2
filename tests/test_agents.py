"""QFQL and FQL agents: gradient separation, Polyak target, scan/vmap training, sampling API,
and the paper's claim in miniature (guidance moves a bimodal behaviour policy to the better mode)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from agents import FQLAgent, QFQLAgent, make_agent
from agents.config import AgentConfig, resolve_config
from agents.sampler import SamplerSettings, guided_flow_sample
from agents.qfql import _sample
from agents.training import sample_batch

OBS_DIM, ACTION_DIM, N = 6, 3, 512
TINY = AgentConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=32, flow_steps=4)
INFO_KEYS = {'actor/loss', 'critic/loss', 'critic/q_mean', 'critic/q_min', 'critic/q_max',
             'actor/grad_norm', 'critic/grad_norm'}


def random_dataset(seed=0, n=N):
    rng = np.random.default_rng(seed)
    data = {'observations': rng.normal(size=(n, OBS_DIM)), 'actions': rng.uniform(-1, 1, (n, ACTION_DIM)),
            'rewards': rng.normal(size=n), 'masks': (rng.uniform(size=n) > 0.1),
            'next_observations': rng.normal(size=(n, OBS_DIM))}
    return {k: jnp.asarray(v, jnp.float32) for k, v in data.items()}


DATA = random_dataset()
BATCH = {k: v[:TINY.batch_size] for k, v in DATA.items()}
KEYED_AGENT = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY)


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def all_zero(tree):
    return all(not np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(tree))


def perturbed(tree, seed):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return treedef.unflatten([x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


# ---- QFQL: the two losses never share gradients ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('target_action', ['flow', 'onestep', 'guided'])
def test_actor_and_critic_losses_share_no_gradient(target_action):
    agent = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2],
                             TINY.replace(target_action=target_action, beta=1.0))
    key = jax.random.PRNGKey(3)
    trainable = {'actor': agent.params['actor'], 'critic': agent.params['critic']}
    actor_grads = jax.grad(lambda p: agent.actor_loss(p, BATCH, key)[0])(trainable)
    critic_grads = jax.grad(lambda p: agent.critic_loss(p, BATCH, key)[0])(trainable)
    assert all_zero(actor_grads['critic']), 'actor loss leaked a gradient into φ'
    assert all_zero(critic_grads['actor']), 'critic loss leaked a gradient into θ'
    assert not all_zero(actor_grads['actor']) and not all_zero(critic_grads['critic'])

    # The actor's update is the same whatever the critic (online and target) is.
    other_critic = perturbed(agent.params['critic'], 1)
    other = agent.replace(params={**agent.params, 'critic': other_critic, 'target_critic': other_critic})
    new_agent, _ = agent.update(BATCH)
    new_other, _ = other.update(BATCH)
    assert leaves_equal(new_agent.params['actor'], new_other.params['actor'])
    assert not leaves_equal(new_agent.params['critic'], new_other.params['critic'])


def test_expectile_critic_shares_no_gradient_and_never_queries_the_actor():
    agent = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY.replace(critic='expectile'))
    key = jax.random.PRNGKey(3)
    trainable = {k: agent.params[k] for k in ('actor', 'critic', 'value')}
    actor_grads = jax.grad(lambda p: agent.actor_loss(p, BATCH, key)[0])(trainable)
    critic_grads = jax.grad(lambda p: agent.critic_loss(p, BATCH, key)[1]['critic/loss'])(trainable)
    value_grads = jax.grad(lambda p: agent.critic_loss(p, BATCH, key)[1]['value/loss'])(trainable)
    assert all_zero(actor_grads['critic']) and all_zero(actor_grads['value'])
    assert all_zero(critic_grads['actor']) and all_zero(critic_grads['value']), 'Q loss moved θ or V'
    assert all_zero(value_grads['actor']) and all_zero(value_grads['critic']), 'V loss moved θ or φ'
    assert not all_zero(critic_grads['critic']) and not all_zero(value_grads['value'])
    # No actor sample enters the critic: NaN actor parameters leave the critic losses finite (the TD
    # critic with the one-step target action ε + v(s', ε, 0), which queries the actor, turns NaN; the
    # flow target would not show it, since the sampler takes a non-finite v as 0).
    nan_actor = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), agent.params['actor'])
    _, info = agent.critic_loss({**trainable, 'actor': nan_actor}, BATCH, key)
    assert np.isfinite(float(info['critic/loss'])) and np.isfinite(float(info['value/loss']))
    td = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY.replace(target_action='onestep'))
    _, td_info = td.critic_loss({'actor': nan_actor, 'critic': td.params['critic']}, BATCH, key)
    assert not np.isfinite(float(td_info['critic/loss']))


def test_expectile_critic_loss_values():
    """Q regresses to r + γ mask V(s'), V to the target critic's aggregated Q at dataset actions."""
    config = TINY.replace(critic='expectile', expectile=0.8, q_agg='min', discount=0.9)
    agent = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], config)
    agent = agent.replace(params={**agent.params, 'target_critic': perturbed(agent.params['critic'], 5)})
    p = agent.params
    q = np.asarray(agent.critic_values(p['critic'], BATCH['observations'], BATCH['actions']))
    next_v = np.asarray(agent.state_values(p['value'], BATCH['next_observations']))
    y = np.asarray(BATCH['rewards']) + 0.9 * np.asarray(BATCH['masks']) * next_v
    target_q = np.asarray(agent.critic_values(p['target_critic'], BATCH['observations'], BATCH['actions'])).min(0)
    diff = target_q - np.asarray(agent.state_values(p['value'], BATCH['observations']))
    _, info = agent.critic_loss(p, BATCH, jax.random.PRNGKey(0))
    np.testing.assert_allclose(info['critic/loss'], np.mean((q - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(info['value/loss'], np.mean(np.where(diff < 0, 0.2, 0.8) * diff ** 2), rtol=1e-5)
    new_agent, update_info = agent.update(BATCH)
    assert 'value/grad_norm' in update_info
    assert not leaves_equal(new_agent.params['value'], agent.params['value'])


@pytest.mark.parametrize('target_action', ['flow', 'guided'])
def test_target_flow_steps_sets_the_euler_steps_of_the_target_action_only(target_action):
    config = TINY.replace(target_action=target_action, beta=1.0, target_flow_steps=2)
    agent = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], config)
    obs, key = BATCH['next_observations'], jax.random.PRNGKey(5)
    noise = agent._noise(key, obs.shape[0])
    velocity = agent.velocity_fn(agent.params['actor'])
    target_q = agent.q_fn(agent.params['target_critic']) if target_action == 'guided' else None
    beta = 1.0 if target_action == 'guided' else 0

    def sample(steps):
        return guided_flow_sample(velocity, target_q, obs, noise, beta, steps)[0]

    target = agent.target_actions(agent.params, obs, key)
    np.testing.assert_allclose(target, sample(2), rtol=1e-6, atol=1e-6)
    assert not np.allclose(target, sample(TINY.flow_steps), atol=1e-4)
    # Acting keeps flow_steps.
    assert agent.sample_actions(obs, key, 0.5)[1]['guidance_norm'].shape[0] == TINY.flow_steps


def test_update_applies_polyak_average_to_target_critic():
    agent = QFQLAgent.create(1, DATA['observations'][:2], DATA['actions'][:2], TINY)
    old_target = perturbed(agent.params['target_critic'], 2)
    agent = agent.replace(params={**agent.params, 'target_critic': old_target})
    new, _ = agent.update(BATCH)
    expected = jax.tree_util.tree_map(lambda t, o: TINY.tau * o + (1 - TINY.tau) * t,
                                      old_target, new.params['critic'])
    for x, y in zip(jax.tree_util.tree_leaves(new.params['target_critic']), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert int(new.step) == 1


@pytest.mark.slow
@pytest.mark.parametrize('agent_cls', [QFQLAgent, FQLAgent])
def test_update_many_equals_a_loop_of_updates_and_reports_metrics(agent_cls):
    agent = agent_cls.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY)
    key = jax.random.PRNGKey(5)
    scanned, info = agent.update_many(DATA, key, 3)
    looped, looped_infos = agent, []
    for step_key in jax.random.split(key, 3):
        looped, step_info = looped.update(sample_batch(DATA, step_key, TINY.batch_size))
        looped_infos.append(step_info)
    for x, y in zip(jax.tree_util.tree_leaves(scanned.params), jax.tree_util.tree_leaves(looped.params)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert INFO_KEYS <= set(info)
    for name in ('actor/grad_norm', 'critic/grad_norm'):   # the chunk's spike is kept, not only its mean
        per_step = [float(i[name]) for i in looped_infos]
        np.testing.assert_allclose(float(info[name + '_max']), max(per_step), rtol=1e-4)
        np.testing.assert_allclose(float(info[name]), np.mean(per_step), rtol=1e-4)
    assert all(np.isfinite(float(v)) for v in info.values())


@pytest.mark.slow
def test_create_and_update_many_vmap_over_seeds():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    agents = jax.vmap(lambda k: QFQLAgent.create(k, DATA['observations'][:2], DATA['actions'][:2], TINY))(keys)
    agents, info = jax.vmap(lambda a, k: a.update_many(DATA, k, 3))(agents, keys)
    assert info['critic/loss'].shape == (3,)
    single = QFQLAgent.create(keys[1], DATA['observations'][:2], DATA['actions'][:2], TINY)
    single, _ = single.update_many(DATA, keys[1], 3)
    np.testing.assert_allclose(jax.tree_util.tree_leaves(agents.params['actor'])[0][1],
                               jax.tree_util.tree_leaves(single.params['actor'])[0], rtol=1e-4, atol=1e-5)


# ---- QFQL sampling ---------------------------------------------------------------------------------
def test_sample_actions_beta_is_a_runtime_value_and_zero_is_exact():
    agent = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY)
    obs, key = DATA['observations'][:16], jax.random.PRNGKey(9)
    agent.sample_actions(obs, key, 0.3)
    compiled = _sample._cache_size()
    guided, diag = agent.sample_actions(obs, key, 0.7)
    assert _sample._cache_size() == compiled, 'changing beta recompiled the sampler'
    assert guided.shape == (16, ACTION_DIM) and diag['guidance_norm'].shape == (TINY.flow_steps, 16)
    assert np.all(np.abs(np.asarray(guided)) <= 1.0)

    static_zero, _ = agent.sample_actions(obs, key, 0)
    runtime_zero, runtime_diag = agent.sample_actions(obs, key, jnp.float32(0.0))
    np.testing.assert_allclose(static_zero, runtime_zero, rtol=1e-6, atol=1e-6)
    assert float(runtime_diag['guidance_norm'].max()) == 0.0
    single, _ = agent.sample_actions(obs[0], key, 0.7)
    assert single.shape == (ACTION_DIM,)


def test_actions_from_noise_takes_one_beta_per_row_and_matches_sample_actions():
    """sample_actions is actions_from_noise on N(0, I) drawn with its key, for both agents; a QFQL
    batch whose rows carry their own β equals each β sampled on its own (a β sweep in one call)."""
    obs, key = DATA['observations'][:6], jax.random.PRNGKey(4)
    noise = jax.random.normal(key, (6, ACTION_DIM), jnp.float32)
    for agent in (KEYED_AGENT, FQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY)):
        np.testing.assert_array_equal(agent.sample_actions(obs, key, 0.7)[0], agent.actions_from_noise(obs, noise, 0.7)[0])
    row_betas = jnp.array([0.0, 0.7, 3.0, 0.0, 0.7, 3.0])
    swept, diag = KEYED_AGENT.actions_from_noise(obs, noise, row_betas)
    for beta in (0.0, 0.7, 3.0):
        rows = np.flatnonzero(np.asarray(row_betas) == beta)
        alone, alone_diag = KEYED_AGENT.actions_from_noise(obs, noise, jnp.float32(beta))
        np.testing.assert_allclose(swept[rows], alone[rows], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(diag['guidance_norm'][:, rows], alone_diag['guidance_norm'][:, rows],
                                   rtol=1e-5, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), beta=st.sampled_from([0.0, 0.7]))
def test_actions_are_a_function_of_the_key(seed, beta):
    """The sampler's only randomness is its key: the same key gives the same actions, another key others."""
    obs = DATA['observations'][:8]
    actions, _ = KEYED_AGENT.sample_actions(obs, jax.random.PRNGKey(seed), beta)
    again, _ = KEYED_AGENT.sample_actions(obs, jax.random.PRNGKey(seed), beta)
    other, _ = KEYED_AGENT.sample_actions(obs, jax.random.fold_in(jax.random.PRNGKey(seed), 1), beta)
    np.testing.assert_array_equal(actions, again)
    assert not np.allclose(actions, other)


# ---- FQL -------------------------------------------------------------------------------------------
def test_fql_critic_is_not_trained_by_the_actor_loss_and_vice_versa():
    agent = FQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY.replace(normalize_q_loss=True))
    key = jax.random.PRNGKey(4)
    trainable = {k: agent.params[k] for k in FQLAgent.TRAINABLE}
    actor_grads = jax.grad(lambda p: agent.actor_loss(p, BATCH, key)[0])(trainable)
    critic_grads = jax.grad(lambda p: agent.critic_loss(p, BATCH, key)[0])(trainable)
    assert all_zero(actor_grads['critic'])
    assert all_zero(critic_grads['actor_bc']) and all_zero(critic_grads['actor_onestep'])
    assert not all_zero(actor_grads['actor_onestep']) and not all_zero(actor_grads['actor_bc'])


def test_fql_acts_with_its_clipped_one_step_policy_whatever_beta():
    """FQL's action is clip(μ_ω(s, ε)) with ε drawn from the key; β and the sampler's knobs change nothing,
    and its diagnostics have the guided sampler's keys so the harness reads both agents alike."""
    agent = FQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY)
    obs, key = DATA['observations'][:5], jax.random.PRNGKey(0)
    actions, diag = agent.sample_actions(obs, key, 0.0)
    guided, _ = agent.sample_actions(obs, key, 3.0, SamplerSettings(flow_steps=7))
    expected = jnp.clip(agent.onestep_actions(agent.params['actor_onestep'], obs, agent._noise(key, 5)), -1.0, 1.0)
    np.testing.assert_allclose(actions, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(actions, guided)
    qfql = QFQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY)
    _, qfql_diag = qfql.sample_actions(obs, key, 3.0)
    assert set(diag) == set(qfql_diag)


def _scaled_critic(agent, factor):
    """The agent with every critic's output layer (kernel and bias) times `factor`: Q becomes factor * Q."""
    critic = agent.params['critic']
    members = critic['VmapMLP_0']
    last = max((k for k in members if k.startswith('Dense_')), key=lambda k: int(k.split('_')[1]))
    scaled = {**members, last: jax.tree.map(lambda x: factor * x, members[last])}
    return agent.replace(params={**agent.params, 'critic': {**critic, 'VmapMLP_0': scaled}})


def test_fql_actor_loss_values():
    """α weights the distillation term only, the distillation target is the clipped K-step flow sample from
    the same noise, and the Q term is -mean Q of the current critic."""
    key = jax.random.PRNGKey(5)
    low = FQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY.replace(alpha=1.0))
    high = low.replace(config=TINY.replace(alpha=11.0))
    low_loss, low_info = low.actor_loss(low.params, BATCH, key)
    high_loss, high_info = high.actor_loss(high.params, BATCH, key)
    np.testing.assert_allclose(high_loss - low_loss, 10.0 * low_info['actor/distill_loss'], rtol=1e-4)

    obs = BATCH['observations']
    noise = low._noise(jax.random.split(key, 3)[2], obs.shape[0])
    flow, _ = guided_flow_sample(low.velocity_fn(low.params['actor_bc']), None, obs, noise, 0, TINY.flow_steps)
    onestep = low.onestep_actions(low.params['actor_onestep'], obs, noise)
    np.testing.assert_allclose(low_info['actor/distill_loss'], jnp.mean(jnp.square(onestep - flow)), rtol=1e-5)
    q = low.critic_values(low.params['critic'], obs, jnp.clip(onestep, -1.0, 1.0)).mean(axis=0)
    np.testing.assert_allclose(low_info['actor/q_loss'], -q.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(low_loss, low_info['actor/flow_loss'] + low_info['actor/distill_loss']
                               + low_info['actor/q_loss'], rtol=1e-5)


@pytest.mark.parametrize('normalize', [False, True])
def test_fql_normalize_q_loss_makes_the_q_term_scale_free(normalize):
    key = jax.random.PRNGKey(6)
    agent = FQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY.replace(normalize_q_loss=normalize))
    q_loss = agent.actor_loss(agent.params, BATCH, key)[1]['actor/q_loss']
    scaled = _scaled_critic(agent, 5.0)
    scaled_q_loss = scaled.actor_loss(scaled.params, BATCH, key)[1]['actor/q_loss']
    np.testing.assert_allclose(scaled_q_loss, q_loss if normalize else 5.0 * q_loss, rtol=1e-4, atol=1e-6)


def test_fql_critic_bootstraps_on_the_one_step_policy_not_the_flow():
    key = jax.random.PRNGKey(7)
    agent = FQLAgent.create(0, DATA['observations'][:2], DATA['actions'][:2], TINY)
    loss = agent.critic_loss(agent.params, BATCH, key)[0]
    other_flow = {**agent.params, 'actor_bc': perturbed(agent.params['actor_bc'], 1)}
    other_onestep = {**agent.params, 'actor_onestep': perturbed(agent.params['actor_onestep'], 2)}
    np.testing.assert_array_equal(agent.critic_loss(other_flow, BATCH, key)[0], loss)
    assert not np.isclose(agent.critic_loss(other_onestep, BATCH, key)[0], loss)


def test_bad_names_give_one_line_errors():
    for call, text in [(lambda: make_agent('sac', 0, BATCH['observations'], BATCH['actions']), 'unknown agent'),
                       (lambda: resolve_config('huge'), 'unknown preset'),
                       (lambda: resolve_config('small', hidden=3), 'unknown AgentConfig field'),
                       (lambda: TINY.replace(q_agg='max'), 'q_agg'),
                       (lambda: TINY.replace(target_action='ddim'), 'target_action'),
                       (lambda: TINY.replace(target_flow_steps=0), 'target_flow_steps')]:
        with pytest.raises(ValueError, match=text) as err:
            call()
        assert '\n' not in str(err.value)


# ---- the paper's claim in miniature -----------------------------------------------------------------
def bimodal_bandit(seed, n=2048):
    """One-step episodes (mask 0) from a constant state; behaviour actions are ±0.6 (+ small noise)
    with equal probability, reward = action, so the +0.6 mode is the better one."""
    rng = np.random.default_rng(seed)
    actions = np.clip(0.6 * (2 * rng.integers(0, 2, n) - 1) + 0.05 * rng.normal(size=n), -1, 1)[:, None]
    obs = np.zeros((n, 1))
    data = {'observations': obs, 'actions': actions, 'rewards': actions[:, 0], 'masks': np.zeros(n),
            'next_observations': obs}
    return {k: jnp.asarray(v, jnp.float32) for k, v in data.items()}


# Margins checked on seeds 0-7 (1500 updates each): β = 0 put 47-53 % of samples at a > 0 and
# 88-94 % within 0.25 of a mode; β = 1 put 82-86 % at a > 0 and at most 10.4 % near the worse mode.
@pytest.mark.slow
@pytest.mark.parametrize('seed', [0, 1])
def test_guidance_moves_bimodal_behaviour_to_the_better_mode(seed):
    config = AgentConfig(actor_hidden=(64, 64), critic_hidden=(64, 64), batch_size=128, flow_steps=10, lr=1e-3)
    data = bimodal_bandit(seed)
    agent = QFQLAgent.create(seed, data['observations'][:2], data['actions'][:2], config)
    agent, info = agent.update_many(data, jax.random.PRNGKey(seed), 1500)
    obs = jnp.zeros((1000, 1))

    def fractions(beta):
        a = np.asarray(agent.sample_actions(obs, jax.random.PRNGKey(100 + seed), beta)[0][:, 0])
        return (a > 0).mean(), (np.abs(a - 0.6) < 0.25).mean(), (np.abs(a + 0.6) < 0.25).mean()

    positive, near_good, near_bad = fractions(0)
    assert 0.35 <= positive <= 0.65, 'unguided flow should reproduce both behaviour modes'
    assert near_good >= 0.3 and near_bad >= 0.3 and near_good + near_bad >= 0.8
    positive, _, near_bad = fractions(1.0)
    assert positive >= 0.75, 'guidance should move most samples to the better mode'
    assert near_bad <= 0.2
