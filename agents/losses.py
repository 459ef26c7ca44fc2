"""Loss pieces shared by QFQL and FQL: flow matching (eq. 2-3), the TD target (eq. 4) and the
Polyak average. Pure functions of arrays so they are unit-tested without networks."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from agents.sampler import aggregate_q


def flow_interpolation(actions, noise, times):
    """a_t = (1 - t) ε + t a and the conditional target velocity u* = a - ε (eq. 2)."""
    return (1.0 - times) * noise + times * actions, actions - noise


def flow_matching_loss(velocity_fn, obs, actions, noise, times):
    """Eq. 3 as a mean over batch *and* action dims (= E‖v - u*‖² / action_dim).

    The constant 1/action_dim does not change Adam's steps for QFQL's pure-BC actor, and it is the
    normalisation FQL's α is calibrated against, so both agents use the same definition."""
    x_t, target = flow_interpolation(actions, noise, times)
    return jnp.mean(jnp.square(velocity_fn(obs, x_t, times) - target))


def td_target(rewards, masks, next_q, discount):
    """y = r + γ · mask · Q̄(s', ã'); mask = 1 - terminal stops bootstrapping past the end."""
    return rewards + discount * masks * next_q


def critic_td_loss(q, target):
    """Mean squared TD error over ensemble members and batch; `target` [B] is broadcast over [E, B]."""
    return jnp.mean(jnp.square(q - jax.lax.stop_gradient(target)))


def ensemble_target(next_qs, how):
    """Aggregate the target-critic ensemble [E, B] -> [B] ('mean' or pessimistic 'min')."""
    return aggregate_q(next_qs, how)


def polyak_update(target_params, online_params, tau):
    """φ̄ ← τ φ + (1 - τ) φ̄, leaf by leaf."""
    return jax.tree_util.tree_map(lambda t, o: tau * o + (1.0 - tau) * t, target_params, online_params)


def expectile_loss(diff, expectile):
    """IQL's asymmetric squared loss |τ - 1(diff < 0)| diff², diff = target - prediction: with τ > 0.5
    under-predictions cost more, so the fit leans towards the upper expectile of the targets."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return jnp.mean(weight * jnp.square(diff))
