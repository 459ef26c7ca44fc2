"""Networks: GELU MLP, the conditional vector field v_θ(s, a_t, t), the one-step policy of FQL
and a Q ensemble whose members are stacked along a leading parameter axis (one vmapped matmul per
layer instead of a Python loop over members)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def default_init(scale: float = 1.0):
    """Glorot-uniform style init (variance scaling over fan_avg), as in the FQL reference setup."""
    return nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


class MLP(nn.Module):
    """Dense -> GELU (-> LayerNorm) per hidden layer, linear output layer."""

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_dims:
            x = nn.gelu(nn.Dense(width, kernel_init=default_init())(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=default_init())(x)


class VectorField(nn.Module):
    """v_θ(s, a_t, t): the flow-matching velocity; `times` has shape [..., 1]."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations, actions, times):
        x = jnp.concatenate([observations, actions, times], axis=-1)
        return MLP(self.hidden_dims, self.action_dim, self.layer_norm)(x)


class OneStepPolicy(nn.Module):
    """μ_ω(s, ε): FQL's distilled one-step policy (no time input)."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations, noises):
        x = jnp.concatenate([observations, noises], axis=-1)
        return MLP(self.hidden_dims, self.action_dim, self.layer_norm)(x)


class QEnsemble(nn.Module):
    """Q_φ(s, a) for `num_members` independently initialised critics; returns [num_members, ...]."""

    hidden_dims: Sequence[int]
    num_members: int = 2
    layer_norm: bool = True

    @nn.compact
    def __call__(self, observations, actions):
        x = jnp.concatenate([observations, actions], axis=-1)
        members = nn.vmap(
            MLP,
            variable_axes={'params': 0},
            split_rngs={'params': True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_members,
        )(self.hidden_dims, 1, self.layer_norm)
        return members(x)[..., 0]
