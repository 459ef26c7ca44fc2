"""The guided flow sampler of QFQL (Algorithm 1b, eq. 5) as a pure function.

    a^{k+1} = a^k + Δt_k (v(s, a^k, t_k) + g_k),   g_k = β_k ∇_a Q(s, a^k)  (after the guards)

It knows nothing about networks: `velocity_fn(obs, a, t)` and `q_fn(obs, a)` are any batched
callables, so its invariants (tests/test_sampler.py) are tested with analytic fields.

Two opt-in departures from eq. 5, each a keyword whose default is the paper's:
  * guidance_at -- where ∇Q is taken. 'noisy' (eq. 5) queries the critic at a^k, a point that is
    off the data at small t, where the critic was never trained. 'denoised' queries it at the
    one-Euler-step clean estimate â = clip(a^k + (1 - t_k) v, box) with v held fixed (QGF, Zhou
    et al. 2026); 'denoised-jacobian' differentiates Q(s, â(a^k)) through v as well, so the
    guidance is (∂â/∂a^k)ᵀ ∇Q(s, â), at the price of one more actor backward pass per step.
  * guidance_scale -- 'absolute' adds β_k ∇Q (eq. 5), whose size follows |Q| and the reward
    scale, so the same β can swamp the flow on one task and do nothing on another. 'relative'
    adds β_k ‖v‖ ∇Q/‖∇Q‖: β is the size of the guidance as a fraction of the flow's own step,
    unchanged by any positive rescaling of Q.

Guards, in order:
  1. grad_clip c: ∇Q is rescaled per sample so that ‖∇Q‖ ≤ c (so ‖g‖ ≤ β_k c when absolute);
  2. trust_ratio ρ: g is rescaled per sample so that ‖g‖ ≤ ρ ‖v‖ (the adaptive guard Appendix A
     asks for: guidance can never dominate the behaviour flow by more than ρ);
  3. non-finite guard: a sample whose g has a NaN/inf takes the unguided step; it is counted.
A non-finite actor output is a different fault (a broken actor, not the critic): that sample's
velocity is taken as 0 for the step, so the action stays finite, and it is counted apart.
β = 0 never evaluates ∇Q: a Python-number 0 skips it when tracing (q_fn may then be None), and a
traced β_k that is 0 at run time takes a lax.cond branch without the gradient. (Under jax.vmap a
cond over a batched β becomes a select that runs both branches -- results are still exact.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from agents.config import (BETA_SCHEDULES, GUIDANCE_POINTS, GUIDANCE_SCALES, Q_AGGREGATIONS, TIME_GRIDS,
                           sampler_defaults)
from agents.flags import positive, setting

VelocityFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
QFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclass(frozen=True)
class SamplerSettings:
    """The sampler's test-time settings, all but β, passed whole from the command line to
    `guided_flow_sample`: they never touch training, so a checkpoint can be evaluated under any of
    them. Frozen and hashable, so an agent takes them as one static argument of its jitted sampler.
    Defaults are eq. 5 as the paper runs it. Every field but `flow_steps` is the sampler keyword of
    the same name; `flow_steps` None acts with the agent's trained step count. The field names are
    config.json's 'sampler' keys and a shipped card's, and each is a flag of `python -m harness.run`."""
    beta_schedule: str = setting('constant', 'β over the flow steps', choices=BETA_SCHEDULES)
    grad_clip: float | None = setting(None, 'clip ‖∇Q‖ per sample to this (default: none)',
                                      parse=positive(False))
    trust_ratio: float | None = setting(
        None, 'cap ‖guidance‖ at this times ‖v‖ (default: none)',
        parse=positive(False, ' (ρ = 0 caps every guidance step at zero; for no guidance at all, pass --beta 0)'))
    flow_steps: int | None = setting(None, 'Euler steps when acting (default: the trained K)',
                                     parse=positive(True))
    guidance_q_agg: str = setting('mean', 'ensemble Q whose gradient guides', choices=Q_AGGREGATIONS)
    guidance_at: str = setting('noisy', 'where ∇Q is taken: noisy (eq. 5), denoised (at the one-step clean '
                               'estimate), denoised-jacobian (also through v)', choices=GUIDANCE_POINTS)
    guidance_scale: str = setting('absolute', 'absolute: β∇Q as eq. 5; relative: β‖v‖∇Q/‖∇Q‖, the same β on '
                                  'every task', choices=GUIDANCE_SCALES)

    @classmethod
    def of(cls, config) -> 'SamplerSettings':
        """The defaults an agent acts with: its AgentConfig's sampler fields (the guards and guidance
        ensemble aggregation the guided TD target trains with), eq. 5 otherwise."""
        return cls(**sampler_defaults(config))

    def sample_kwargs(self) -> dict:
        """`guided_flow_sample`'s keyword arguments (flow_steps is its `num_steps`, which the agent resolves)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'flow_steps'}

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


PAPER_SAMPLER = SamplerSettings()


def time_grid(num_steps: int, kind: str = 'uniform') -> jax.Array:
    """0 = t_0 < … < t_K = 1 (shape [K+1]); 'cosine' puts more steps near both ends."""
    if kind not in TIME_GRIDS:
        raise ValueError(f'time_grid must be one of {TIME_GRIDS}, got {kind!r}')
    if num_steps < 1:
        raise ValueError(f'num_steps must be >= 1, got {num_steps}')
    u = jnp.arange(num_steps + 1, dtype=jnp.float32) / num_steps
    if kind == 'cosine':
        u = 0.5 * (1.0 - jnp.cos(jnp.pi * u))
    # Pin the ends exactly so that Σ Δt_k telescopes to 1 up to float rounding.
    return u.at[0].set(0.0).at[-1].set(1.0)


def beta_schedule_values(beta, times: jax.Array, schedule: str = 'constant') -> jax.Array:
    """β_k at the left end t_k of each step: constant β, or annealed to 0 at t = 1 linearly
    (β(1 - t)) or along a half cosine (β(1 + cos πt)/2). `times` are the K left ends; a β of shape
    [B] (one per sample) gives [K, B]."""
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f'beta_schedule must be one of {BETA_SCHEDULES}, got {schedule!r}')
    beta = jnp.asarray(beta, jnp.float32)
    times = times.reshape(times.shape + (1,) * beta.ndim)
    if schedule == 'constant':
        return jnp.broadcast_to(beta, times.shape[:1] + beta.shape)
    if schedule == 'linear':
        return beta * (1.0 - times)
    return beta * 0.5 * (1.0 + jnp.cos(jnp.pi * times))


def aggregate_q(q: jax.Array, how: str = 'mean') -> jax.Array:
    """Reduce an ensemble output [E, B] to [B]; a [B] input passes through unchanged."""
    if how not in Q_AGGREGATIONS:
        raise ValueError(f'q_agg must be one of {Q_AGGREGATIONS}, got {how!r}')
    if q.ndim == 1:
        return q
    return q.mean(axis=0) if how == 'mean' else q.min(axis=0)


def is_static_zero(beta) -> bool:
    """True for a Python/NumPy number equal to 0 (never a jax array or tracer): then the
    gradient of Q is not even traced."""
    return isinstance(beta, (int, float, np.number)) and float(beta) == 0.0


def _row_norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=-1))


def _grad_q(q_fn: QFn, velocity_fn: VelocityFn, obs, actions, velocity, times, q_agg, guidance_at, low, high):
    """∇Q per sample at the point `guidance_at` names (see the module docstring)."""
    def total_q(a):
        return jnp.sum(aggregate_q(q_fn(obs, a), q_agg))

    if guidance_at == 'noisy':
        return jax.grad(total_q)(actions)
    remaining = 1.0 - times
    if guidance_at == 'denoised':
        return jax.grad(total_q)(jnp.clip(actions + remaining * jax.lax.stop_gradient(velocity), low, high))
    return jax.grad(lambda a: total_q(jnp.clip(a + remaining * velocity_fn(obs, a, times), low, high)))(actions)


def _guidance(grad_q, velocity_norm, beta_k, grad_clip, trust_ratio, guidance_scale):
    """β_k-scaled guidance after the clip / trust-ratio / non-finite guards; also ‖∇Q‖ and the bad-row mask."""
    grad_norm = _row_norm(grad_q)
    if grad_clip is not None:
        # NaN norms compare False and keep their NaN; inf norms give inf * 0 = NaN: both are
        # caught by the finiteness check below.
        scale = jnp.where(grad_norm > grad_clip, grad_clip / grad_norm, 1.0)
        grad_q = grad_q * scale[:, None]
    beta_column = jnp.reshape(beta_k, (-1, 1))   # [1, 1] for one β, [B, 1] for one per sample
    if guidance_scale == 'relative':
        norm = _row_norm(grad_q)
        guidance = beta_column * (velocity_norm / jnp.where(norm > 0, norm, 1.0))[:, None] * grad_q
    else:
        guidance = beta_column * grad_q
    if trust_ratio is not None:
        limit = trust_ratio * velocity_norm
        norm = _row_norm(guidance)
        scale = jnp.where(norm > limit, limit / jnp.where(norm > 0, norm, 1.0), 1.0)
        guidance = guidance * scale[:, None]
    finite = jnp.all(jnp.isfinite(guidance), axis=-1)
    guidance = jnp.where(finite[:, None], guidance, 0.0)
    # A sample whose own β_k is 0 takes exactly the unguided step, whatever its batch-mates' β:
    # no gradient norm, no fallback, even where ∇Q is non-finite.
    guided = jnp.broadcast_to(beta_column[:, 0] != 0.0, grad_norm.shape)
    return (jnp.where(guided[:, None], guidance, 0.0), jnp.where(guided, grad_norm, 0.0),
            ~finite & guided)


def guided_flow_sample(
    velocity_fn: VelocityFn,
    q_fn: QFn | None,
    obs: jax.Array,
    noise: jax.Array,
    beta,
    num_steps: int,
    beta_schedule: str = PAPER_SAMPLER.beta_schedule,
    grad_clip: float | None = PAPER_SAMPLER.grad_clip,
    trust_ratio: float | None = PAPER_SAMPLER.trust_ratio,
    clip_actions: bool = True,
    *,
    guidance_q_agg: str = PAPER_SAMPLER.guidance_q_agg,
    grid: str = 'uniform',
    action_low: float = -1.0,
    action_high: float = 1.0,
    return_path: bool = False,
    guidance_at: str = PAPER_SAMPLER.guidance_at,
    guidance_scale: str = PAPER_SAMPLER.guidance_scale,
):
    """Integrate the (guided) flow from a⁰ = `noise` [B, A] in `num_steps` Euler steps.

    `velocity_fn(obs, a, t)` gets t of shape [B, 1]; `q_fn(obs, a)` returns [B] or an ensemble
    [E, B] reduced with `guidance_q_agg` ('mean' | 'min'). `beta` may be a Python number, a traced scalar,
    or one value per sample (shape [B]: a whole β sweep in one batch; a row with β = 0 takes exactly
    the unguided step).
    Returns (actions [B, A], diag) with diag['velocity_norm'|'grad_q_norm'|'guidance_norm'] of
    shape [K, B] (grad_q_norm is before clipping; 0 where no gradient was taken) and
    diag['nonfinite_fallbacks'], the int32 count of (step, sample) pairs whose guidance fell back,
    and diag['nonfinite_velocity'], the count of (step, sample) pairs whose v was non-finite.
    `guidance_at` ('noisy' | 'denoised' | 'denoised-jacobian') and `guidance_scale` ('absolute' |
    'relative') are explained in the module docstring.
    With return_path, diag['path'] [K+1, B, A] holds a⁰ … a^K (before the final clip).
    """
    # Numbers are checked here; traced values (allowed, so sweeps need not recompile) cannot be.
    if isinstance(beta, (int, float, np.number)) and not beta >= 0:
        raise ValueError(f'beta must be >= 0, got {beta}')
    if isinstance(grad_clip, (int, float)) and not grad_clip > 0:
        raise ValueError(f'grad_clip must be > 0 or None, got {grad_clip}')
    if isinstance(trust_ratio, (int, float)) and not trust_ratio >= 0:
        raise ValueError(f'trust_ratio must be >= 0 or None, got {trust_ratio}')
    if guidance_at not in GUIDANCE_POINTS:
        raise ValueError(f'guidance_at must be one of {GUIDANCE_POINTS}, got {guidance_at!r}')
    if guidance_scale not in GUIDANCE_SCALES:
        raise ValueError(f'guidance_scale must be one of {GUIDANCE_SCALES}, got {guidance_scale!r}')
    skip_guidance = is_static_zero(beta)
    if q_fn is None and not skip_guidance:
        raise ValueError('q_fn is required unless beta is the Python number 0')
    times = time_grid(num_steps, grid)
    left, dts = times[:-1], jnp.diff(times)
    betas = beta_schedule_values(0.0 if skip_guidance else beta, left, beta_schedule)
    batch = noise.shape[0]
    zeros_b = jnp.zeros((batch,), noise.dtype)

    def step(actions, xs):
        t, dt, beta_k = xs
        t_column = jnp.full((batch, 1), t, actions.dtype)
        velocity = velocity_fn(obs, actions, t_column)
        finite_velocity = jnp.all(jnp.isfinite(velocity), axis=-1)
        velocity = jnp.where(finite_velocity[:, None], velocity, 0.0)
        velocity_norm = _row_norm(velocity)
        if skip_guidance:
            guidance, grad_norm, bad = jnp.zeros_like(actions), zeros_b, jnp.zeros((batch,), bool)
        else:
            guidance, grad_norm, bad = jax.lax.cond(
                jnp.any(beta_k != 0.0),
                lambda a: _guidance(
                    _grad_q(q_fn, velocity_fn, obs, a, velocity, t_column, guidance_q_agg, guidance_at, action_low,
                            action_high),
                    velocity_norm, beta_k, grad_clip, trust_ratio, guidance_scale),
                lambda a: (jnp.zeros_like(a), zeros_b, jnp.zeros((batch,), bool)),
                actions,
            )
        new_actions = actions + dt * (velocity + guidance)
        path_entry = new_actions if return_path else None
        # A broken actor also breaks the Jacobian mode's ∇Q; that is counted once, as the actor's.
        return new_actions, (velocity_norm, grad_norm, _row_norm(guidance), bad & finite_velocity, ~finite_velocity,
                             path_entry)

    actions, (velocity_norm, grad_norm, guidance_norm, bad, bad_velocity, path) = jax.lax.scan(
        step, noise, (left, dts, betas))
    if clip_actions:
        actions = jnp.clip(actions, action_low, action_high)
    diag = {
        'velocity_norm': velocity_norm,
        'grad_q_norm': grad_norm,
        'guidance_norm': guidance_norm,
        'nonfinite_fallbacks': jnp.sum(bad, dtype=jnp.int32),
        'nonfinite_velocity': jnp.sum(bad_velocity, dtype=jnp.int32),
    }
    if return_path:
        diag['path'] = jnp.concatenate([noise[None], path], axis=0)
    return actions, diag
