"""Unit tests of the loss pieces: flow-matching target, TD target with masks, Polyak average."""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from agents.losses import (critic_td_loss, ensemble_target, expectile_loss, flow_interpolation,
                           flow_matching_loss, polyak_update, td_target)

SETTINGS = settings(max_examples=20, deadline=None)


def _arrays(seed, shape=(8, 3)):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return jax.random.normal(k1, shape), jax.random.normal(k2, shape), jax.random.uniform(k3, shape[:1] + (1,))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_flow_interpolation_endpoints_and_target(seed):
    actions, noise, times = _arrays(seed)
    x_t, target = flow_interpolation(actions, noise, times)
    np.testing.assert_allclose(x_t, (1 - times) * noise + times * actions, rtol=1e-6)
    np.testing.assert_allclose(flow_interpolation(actions, noise, jnp.zeros_like(times))[0], noise)
    np.testing.assert_allclose(flow_interpolation(actions, noise, jnp.ones_like(times))[0], actions)
    np.testing.assert_allclose(target, actions - noise, rtol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_flow_matching_loss_is_zero_for_the_exact_field_and_mse_otherwise(seed):
    """For one data action a the exact conditional field is (a - x_t)/(1 - t) = a - ε: loss 0.
    The zero field costs mean((a - ε)²)."""
    actions, noise, times = _arrays(seed)
    times = 0.95 * times
    obs = jnp.zeros((actions.shape[0], 1))
    exact = lambda o, x, t: (actions - x) / (1 - t)
    assert float(flow_matching_loss(exact, obs, actions, noise, times)) < 1e-8
    zero = lambda o, x, t: jnp.zeros_like(x)
    np.testing.assert_allclose(flow_matching_loss(zero, obs, actions, noise, times),
                               jnp.mean(jnp.square(actions - noise)), rtol=1e-6)


def test_td_target_uses_masks():
    rewards = jnp.array([1.0, 2.0, -1.0])
    masks = jnp.array([1.0, 0.0, 1.0])
    next_q = jnp.array([10.0, 10.0, 4.0])
    np.testing.assert_allclose(td_target(rewards, masks, next_q, 0.9), [1.0 + 9.0, 2.0, -1.0 + 3.6], rtol=1e-6)


def test_ensemble_target_mean_and_min():
    qs = jnp.array([[1.0, 5.0], [3.0, 2.0]])
    np.testing.assert_allclose(ensemble_target(qs, 'mean'), [2.0, 3.5])
    np.testing.assert_allclose(ensemble_target(qs, 'min'), [1.0, 2.0])


def test_critic_td_loss_does_not_differentiate_the_target():
    q = jnp.array([[1.0, 2.0], [0.0, 1.0]])
    target = jnp.array([0.5, 0.5])
    grad_target = jax.grad(lambda y: critic_td_loss(q, y))(target)
    np.testing.assert_array_equal(grad_target, 0.0)
    np.testing.assert_allclose(critic_td_loss(q, target), np.mean((np.asarray(q) - 0.5) ** 2))


@SETTINGS
@given(tau=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_polyak_update(tau, seed):
    online, target, _ = _arrays(seed)
    online_tree = {'w': online, 'b': {'c': online[0]}}
    target_tree = {'w': target, 'b': {'c': target[0]}}
    new = polyak_update(target_tree, online_tree, tau)
    np.testing.assert_allclose(new['w'], tau * online + (1 - tau) * target, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new['b']['c'], tau * online[0] + (1 - tau) * target[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(polyak_update(target_tree, online_tree, 1.0)['w'], online)
    np.testing.assert_allclose(polyak_update(target_tree, online_tree, 0.0)['w'], target)


@SETTINGS
@given(expectile=st.floats(0.05, 0.95), p=st.floats(0.1, 0.9))
def test_expectile_loss_is_minimised_at_the_expectile(expectile, p):
    """Targets 0 and 1 with weights 1 - p and p: the τ-expectile v solves τ p (1 - v) = (1 - τ)(1 - p) v,
    so v* = τp / (τp + (1 - τ)(1 - p)); at τ = 0.5 it is the mean p."""
    n = 1000
    targets = jnp.where(jnp.arange(n) < round(p * n), 1.0, 0.0)
    q = float(targets.mean())
    grid = jnp.linspace(0.0, 1.0, 2001)
    losses = jax.vmap(lambda v: expectile_loss(targets - v, expectile))(grid)
    expected = expectile * q / (expectile * q + (1 - expectile) * (1 - q))
    assert abs(float(grid[jnp.argmin(losses)]) - expected) <= 1e-3
    np.testing.assert_allclose(expectile_loss(jnp.array([2.0, -2.0]), expectile),
                               (expectile * 4 + (1 - expectile) * 4) / 2, rtol=1e-6)
