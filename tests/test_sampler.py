"""Invariants of the guided sampler (a pure function of its fields: agents/sampler.py), checked
with analytic velocity/Q fields. Shapes come from small fixed menus and every numeric knob is a
traced argument, so JAX compiles a handful of programs, not one per hypothesis example."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from agents.sampler import guided_flow_sample, time_grid

ACTION_DIM = 3
OBS_DIM = 2
SETTINGS = settings(max_examples=20, deadline=None)

betas = st.floats(0.01, 5.0)
step_counts = st.sampled_from([1, 5])
batch_sizes = st.sampled_from([1, 7])
seeds = st.integers(0, 2**31 - 1)
clips = st.floats(0.01, 3.0)
schedules = st.sampled_from(['constant', 'linear', 'cosine'])
grids = st.sampled_from(['uniform', 'cosine'])
points = st.sampled_from(['noisy', 'denoised', 'denoised-jacobian'])
scales = st.sampled_from(['absolute', 'relative'])

W = jnp.array([0.5, -1.0, 2.0])
CENTER = jnp.array([0.3, -0.2, 0.1])


# ---- analytic fields ------------------------------------------------------------------------
def linear_velocity(obs, a, t):
    """v = -a + t + obs[:, :1]: depends on state, action and time, and is row-wise."""
    return -a + t + obs[:, :1]


def zero_velocity(obs, a, t):
    return jnp.zeros_like(a)


def linear_q(obs, a):
    return a @ W


def steep_quadratic_q(obs, a):
    """Q = -10‖a - c‖² · (1 + obs₀²): gradients of all sizes, row-wise."""
    return -10.0 * jnp.sum(jnp.square(a - CENTER), axis=-1) * (1.0 + obs[:, 0] ** 2)


def concave_quadratic_q(obs, a):
    return -jnp.sum(jnp.square(a - CENTER), axis=-1)


def scaled_linear_q(obs, a):
    """Q = (w·a) · obs₁: a row whose obs₁ is NaN/inf has a non-finite ∇Q, the others do not."""
    return (a @ W) * obs[:, 1]


FIELDS = {'linear': linear_velocity, 'zero': zero_velocity}
QS = {'linear': linear_q, 'steep': steep_quadratic_q, 'concave': concave_quadratic_q, 'scaled': scaled_linear_q,
      'steep_x1000': lambda obs, a: 1000.0 * steep_quadratic_q(obs, a)}


@partial(jax.jit, static_argnames=('velocity', 'q', 'num_steps', 'schedule', 'grid', 'clip_actions',
                                   'use_clip', 'use_trust', 'return_path', 'at', 'scale', 'box'))
def sample(obs, noise, beta, grad_clip=1.0, trust_ratio=1.0, *, velocity='linear', q='linear', num_steps=3,
           schedule='constant', grid='uniform', clip_actions=False, use_clip=False, use_trust=False,
           return_path=False, at='noisy', scale='absolute', box=1.0):
    return guided_flow_sample(FIELDS[velocity], QS[q], obs, noise, beta, num_steps, beta_schedule=schedule,
                              grad_clip=grad_clip if use_clip else None,
                              trust_ratio=trust_ratio if use_trust else None,
                              clip_actions=clip_actions, grid=grid, return_path=return_path,
                              guidance_at=at, guidance_scale=scale, action_low=-box, action_high=box)


def inputs(seed, batch):
    obs_key, noise_key = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(obs_key, (batch, OBS_DIM)), jax.random.normal(noise_key, (batch, ACTION_DIM))


def euler_reference(obs, noise, num_steps):
    """Plain NumPy Euler integration of linear_velocity on the uniform grid."""
    a, obs = np.asarray(noise, np.float64), np.asarray(obs, np.float64)
    for k in range(num_steps):
        t = k / num_steps
        a = a + (1.0 / num_steps) * (-a + t + obs[:, :1])
    return a


# ---- β = 0 ------------------------------------------------------------------------------------
@pytest.mark.slow
@SETTINGS
@given(num_steps=step_counts, batch=batch_sizes, seed=seeds, at=points, scale=scales)
def test_beta_zero_equals_unguided_euler(num_steps, batch, seed, at, scale):
    obs, noise = inputs(seed, batch)
    expected = euler_reference(obs, noise, num_steps)
    static, _ = guided_flow_sample(linear_velocity, linear_q, obs, noise, 0, num_steps, clip_actions=False,
                                   guidance_at=at, guidance_scale=scale)
    traced, diag = sample(obs, noise, jnp.float32(0.0), num_steps=num_steps, at=at, scale=scale)
    np.testing.assert_allclose(static, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(traced, expected, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(diag['guidance_norm'])) == 0.0


def _exploding_q(obs, a):
    raise AssertionError('q_fn must not be called when beta is the Python number 0')


@SETTINGS
@given(num_steps=step_counts, batch=batch_sizes, seed=seeds)
def test_beta_zero_never_traces_grad_q(num_steps, batch, seed):
    """Static path: a q_fn that raises when called (or no q_fn at all) is fine at β = 0."""
    obs, noise = inputs(seed, batch)
    with_raising_q, _ = guided_flow_sample(linear_velocity, _exploding_q, obs, noise, 0, num_steps)
    without_q, _ = guided_flow_sample(linear_velocity, None, obs, noise, 0.0, num_steps)
    np.testing.assert_array_equal(with_raising_q, without_q)


def test_beta_zero_never_evaluates_grad_q_at_run_time():
    """Traced path (β a runtime value inside jit, as in agent.sample_actions): a host callback
    inside q_fn counts how often Q really runs. β = 0 -> never; β > 0 -> once per step."""
    calls = []

    def counting_q(obs, a):
        jax.debug.callback(lambda: calls.append(1))
        return a @ W

    run = jax.jit(lambda obs, noise, beta: guided_flow_sample(linear_velocity, counting_q, obs, noise, beta, 4))
    obs, noise = inputs(0, 5)
    run(obs, noise, jnp.float32(0.0))[0].block_until_ready()
    jax.effects_barrier()
    assert calls == []
    run(obs, noise, jnp.float32(0.5))[0].block_until_ready()
    jax.effects_barrier()
    assert len(calls) == 4


@SETTINGS
@given(num_steps=step_counts, batch=batch_sizes, seed=seeds, at=points)
def test_beta_zero_ignores_nan_q_gradient(num_steps, batch, seed, at):
    """If ∇Q were evaluated at β = 0 its NaNs would be counted as fallbacks: none are."""
    obs, noise = inputs(seed, batch)
    nan_obs = obs.at[:, 1].set(jnp.nan)
    actions, diag = sample(nan_obs, noise, jnp.float32(0.0), q='scaled', num_steps=num_steps, at=at)
    assert int(diag['nonfinite_fallbacks']) == 0
    np.testing.assert_allclose(actions, euler_reference(nan_obs, noise, num_steps), rtol=1e-5, atol=1e-5)


# ---- guidance arithmetic ----------------------------------------------------------------------
@SETTINGS
@given(beta=betas, num_steps=step_counts, batch=batch_sizes, seed=seeds, grid=grids)
def test_linear_q_with_zero_velocity_adds_beta_w(beta, num_steps, batch, seed, grid):
    obs, noise = inputs(seed, batch)
    actions, _ = sample(obs, noise, beta, velocity='zero', q='linear', num_steps=num_steps, grid=grid)
    np.testing.assert_allclose(actions, noise + beta * W, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(beta=betas, num_steps=step_counts, batch=batch_sizes, seed=seeds, schedule=schedules)
def test_beta_schedule_scales_each_step(beta, num_steps, batch, seed, schedule):
    """With v ≡ 0 and Q = w·a the output is noise + w Σ_k β_k Δt_k for any schedule."""
    obs, noise = inputs(seed, batch)
    actions, _ = sample(obs, noise, beta, velocity='zero', num_steps=num_steps, schedule=schedule)
    t = np.arange(num_steps) / num_steps
    factor = {'constant': np.ones_like(t), 'linear': 1 - t, 'cosine': 0.5 * (1 + np.cos(np.pi * t))}[schedule]
    np.testing.assert_allclose(actions, noise + beta * np.sum(factor / num_steps) * W, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kind', ['uniform', 'cosine'])
@pytest.mark.parametrize('num_steps', [1, 2, 5, 10, 64])
def test_time_grid_is_a_partition_of_unit_interval(kind, num_steps):
    t = np.asarray(time_grid(num_steps, kind), np.float64)
    assert t.shape == (num_steps + 1,)
    assert t[0] == 0.0 and t[-1] == 1.0
    assert np.all(np.diff(t) > 0)
    assert abs(np.sum(np.diff(t)) - 1.0) < 1e-6


@SETTINGS
@given(beta=betas, clip=clips, num_steps=step_counts, batch=batch_sizes, seed=seeds, at=points)
def test_grad_clip_bounds_applied_guidance(beta, clip, num_steps, batch, seed, at):
    obs, noise = inputs(seed, batch)
    _, diag = sample(obs, noise, beta, clip, q='steep', num_steps=num_steps, use_clip=True, at=at)
    assert np.all(np.asarray(diag['guidance_norm']) <= beta * clip * (1 + 1e-5) + 1e-6)
    # grad_q_norm is reported before clipping, so it is where the clip shows.
    assert np.all(np.asarray(diag['grad_q_norm']) >= np.asarray(diag['guidance_norm']) / beta * (1 - 1e-5) - 1e-6)


@SETTINGS
@given(beta=betas, ratio=st.floats(0.0, 2.0), num_steps=step_counts, batch=batch_sizes, seed=seeds, at=points,
       scale=scales)
def test_trust_ratio_bounds_guidance_by_velocity(beta, ratio, num_steps, batch, seed, at, scale):
    obs, noise = inputs(seed, batch)
    _, diag = sample(obs, noise, beta, 1.0, ratio, q='steep', num_steps=num_steps, use_trust=True, at=at,
                     scale=scale)
    assert np.all(np.asarray(diag['guidance_norm'])
                  <= ratio * np.asarray(diag['velocity_norm']) * (1 + 1e-5) + 1e-6)


@SETTINGS
@given(beta=st.floats(0.0, 5.0), num_steps=step_counts, seed=seeds, use_clip=st.booleans(),
       use_trust=st.booleans(), at=points, scale=scales)
@pytest.mark.slow
def test_rows_are_independent(beta, num_steps, seed, use_clip, use_trust, at, scale):
    obs, noise = inputs(seed, 4)
    kwargs = dict(q='steep', num_steps=num_steps, use_clip=use_clip, use_trust=use_trust, at=at, scale=scale)
    batched, batched_diag = sample(obs, noise, beta, 0.5, 0.7, **kwargs)
    for i in range(4):
        row, row_diag = sample(obs[i:i + 1], noise[i:i + 1], beta, 0.5, 0.7, **kwargs)
        np.testing.assert_allclose(batched[i:i + 1], row, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched_diag['guidance_norm'][:, i:i + 1], row_diag['guidance_norm'],
                                   rtol=1e-5, atol=1e-6)


@SETTINGS
@given(beta=betas, num_steps=step_counts, seed=seeds, schedule=schedules, use_clip=st.booleans(),
       use_trust=st.booleans(), at=points, scale=scales)
@pytest.mark.slow
def test_one_beta_per_row_equals_each_row_at_its_own_beta(beta, num_steps, seed, schedule, use_clip, use_trust,
                                                          at, scale):
    """A whole β sweep in one batch: row i at β_i is row i sampled with the scalar β_i, and a β = 0 row
    is exactly the unguided step even where ∇Q is NaN."""
    obs, noise = inputs(seed, 4)
    obs = obs.at[:, 1].set(1.0).at[3, 1].set(np.nan)          # row 3 has a NaN ∇Q
    row_betas = jnp.array([beta, 0.0, 2.0 * beta, 0.0])
    kwargs = dict(q='scaled', num_steps=num_steps, schedule=schedule, use_clip=use_clip, use_trust=use_trust,
                  at=at, scale=scale)
    batched, diag = sample(obs, noise, row_betas, 0.5, 0.7, **kwargs)
    for i in range(4):
        row, row_diag = sample(obs, noise, jnp.float32(row_betas[i]), 0.5, 0.7, **kwargs)
        np.testing.assert_allclose(batched[i], row[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(diag['guidance_norm'][:, i], row_diag['guidance_norm'][:, i], rtol=1e-5, atol=1e-6)
    unguided, _ = sample(obs, noise, jnp.float32(0.0), **kwargs)
    np.testing.assert_array_equal(batched[1::2], unguided[1::2])
    assert np.all(np.asarray(diag['grad_q_norm'])[:, 1::2] == 0)
    assert int(diag['nonfinite_fallbacks']) == 0


@SETTINGS
@given(beta=st.floats(0.0, 50.0), num_steps=step_counts, batch=batch_sizes, seed=seeds)
def test_output_is_finite_and_in_the_box_from_any_start(beta, num_steps, batch, seed):
    obs, noise = inputs(seed, batch)
    actions, _ = sample(obs, 3.0 * noise, beta, q='steep', num_steps=num_steps, clip_actions=True)  # starts outside
    assert np.all(np.isfinite(actions))
    assert np.all(np.abs(np.asarray(actions)) <= 1.0)


@SETTINGS
@given(beta=betas, num_steps=step_counts, seed=seeds, bad=st.sampled_from([np.nan, np.inf, -np.inf]),
       use_clip=st.booleans(), use_trust=st.booleans(), at=points, scale=scales)
@pytest.mark.slow
def test_nonfinite_guidance_falls_back_to_unguided_and_is_counted(beta, num_steps, seed, bad, use_clip,
                                                                  use_trust, at, scale):
    obs, noise = inputs(seed, 6)
    obs = obs.at[:, 1].set(1.0)
    bad_rows = np.array([True, False, True, False, False, True])
    obs = obs.at[bad_rows, 1].set(bad)
    kwargs = dict(q='scaled', num_steps=num_steps, use_clip=use_clip, use_trust=use_trust, at=at, scale=scale)
    actions, diag = sample(obs, noise, beta, 0.5, 0.7, **kwargs)
    unguided, _ = sample(obs, noise, jnp.float32(0.0), **kwargs)
    good_obs = obs.at[:, 1].set(1.0)
    guided, _ = sample(good_obs, noise, beta, 0.5, 0.7, **kwargs)
    assert np.all(np.isfinite(actions))
    np.testing.assert_allclose(actions[bad_rows], unguided[bad_rows], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(actions[~bad_rows], guided[~bad_rows], rtol=1e-5, atol=1e-6)
    assert int(diag['nonfinite_fallbacks']) == bad_rows.sum() * num_steps


@pytest.mark.slow
@SETTINGS
@given(beta=st.floats(0.01, 2.0), num_steps=st.sampled_from([4, 8]), batch=batch_sizes, seed=seeds)
def test_small_guided_steps_do_not_decrease_concave_q(beta, num_steps, batch, seed):
    """Q = -‖a - c‖², v ≡ 0: a step of size h = βΔt ≤ 1/2 moves a towards c, so Q never drops."""
    obs, noise = inputs(seed, batch)
    _, diag = sample(obs, noise, beta, velocity='zero', q='concave', num_steps=num_steps, return_path=True)
    q_along_path = np.stack([np.asarray(concave_quadratic_q(obs, a)) for a in diag['path']])
    assert np.all(np.diff(q_along_path, axis=0) >= -1e-6)


# ---- where ∇Q is taken, and scale-free guidance -------------------------------------------------
@pytest.mark.slow
@SETTINGS
@given(beta=st.floats(0.01, 0.5), num_steps=step_counts, batch=batch_sizes, seed=seeds)
def test_guidance_points_agree_when_the_flow_is_still(beta, num_steps, batch, seed):
    """v ≡ 0 makes the denoised estimate â = a (inside a box wide enough not to clip), and its
    Jacobian the identity: all three points give the same path for a curved Q."""
    obs, noise = inputs(seed, batch)
    runs = [sample(obs, noise, beta, velocity='zero', q='concave', num_steps=num_steps, at=at, box=100.0)
            for at in ('noisy', 'denoised', 'denoised-jacobian')]
    for actions, diag in runs[1:]:
        np.testing.assert_allclose(actions, runs[0][0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(diag['guidance_norm'], runs[0][1]['guidance_norm'], rtol=1e-5, atol=1e-5)


@SETTINGS
@given(beta=betas, num_steps=step_counts, batch=batch_sizes, seed=seeds)
def test_noisy_and_denoised_agree_for_a_linear_q(beta, num_steps, batch, seed):
    """∇(w·a) = w wherever it is taken, even where â is clipped to the box."""
    obs, noise = inputs(seed, batch)
    noisy, _ = sample(obs, 3.0 * noise, beta, num_steps=num_steps, at='noisy')
    denoised, _ = sample(obs, 3.0 * noise, beta, num_steps=num_steps, at='denoised')
    np.testing.assert_allclose(denoised, noisy, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(beta=betas, num_steps=step_counts, batch=batch_sizes, seed=seeds)
def test_jacobian_mode_scales_guidance_by_the_affine_flow_factor(beta, num_steps, batch, seed):
    """v = -a + t + s₀ gives â = a + (1 - t) v, so ∂â/∂a = t·I: with Q = w·a the Jacobian mode
    applies β t_k w at step k, where the plain denoised mode applies β w."""
    obs, noise = inputs(seed, batch)
    _, plain = sample(obs, noise, beta, num_steps=num_steps, at='denoised', box=100.0)
    _, chained = sample(obs, noise, beta, num_steps=num_steps, at='denoised-jacobian', box=100.0)
    t = np.arange(num_steps) / num_steps
    w_norm = float(jnp.linalg.norm(W))
    np.testing.assert_allclose(plain['guidance_norm'], np.full((num_steps, batch), beta * w_norm), rtol=1e-4)
    np.testing.assert_allclose(chained['guidance_norm'], beta * w_norm * np.repeat(t[:, None], batch, 1),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@SETTINGS
@given(beta=betas, num_steps=step_counts, batch=batch_sizes, seed=seeds, at=points)
def test_relative_guidance_is_beta_times_the_flow_and_ignores_the_scale_of_q(beta, num_steps, batch, seed, at):
    obs, noise = inputs(seed, batch)
    actions, diag = sample(obs, noise, beta, q='steep', num_steps=num_steps, at=at, scale='relative', box=100.0)
    scaled, _ = sample(obs, noise, beta, q='steep_x1000', num_steps=num_steps, at=at, scale='relative', box=100.0)
    np.testing.assert_allclose(scaled, actions, rtol=1e-4, atol=1e-4)
    pushed = np.asarray(diag['grad_q_norm']) > 0
    np.testing.assert_allclose(np.asarray(diag['guidance_norm'])[pushed],
                               beta * np.asarray(diag['velocity_norm'])[pushed], rtol=1e-4, atol=1e-6)
    # The paper's absolute guidance does follow the scale of Q.
    absolute, _ = sample(obs, noise, beta, q='steep', num_steps=num_steps, box=100.0)
    absolute_scaled, _ = sample(obs, noise, beta, q='steep_x1000', num_steps=num_steps, box=100.0)
    assert not np.allclose(absolute, absolute_scaled, atol=1e-3)


def test_ensemble_q_aggregation_for_guidance():
    """An ensemble q_fn [E, B] is reduced by mean (default) or min before taking ∇_a."""
    def ensemble_q(obs, a):
        return jnp.stack([a @ W, 3.0 * (a @ W) + 100.0])   # member 0 is the min for these actions

    obs, noise = inputs(0, 4)
    mean_out, _ = guided_flow_sample(zero_velocity, ensemble_q, obs, noise, 1.0, 2, clip_actions=False)
    min_out, _ = guided_flow_sample(zero_velocity, ensemble_q, obs, noise, 1.0, 2, clip_actions=False,
                                    guidance_q_agg='min')
    np.testing.assert_allclose(mean_out, noise + 2.0 * W, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(min_out, noise + W, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@SETTINGS
@given(beta=st.floats(0.0, 5.0), num_steps=step_counts, seed=seeds, at=points)
def test_a_non_finite_actor_output_never_reaches_the_action_and_is_counted_apart(beta, num_steps, seed, at):
    """Rows whose v is NaN (a broken actor) keep a finite action; the critic's fallback count stays 0."""
    obs, noise = inputs(seed, 4)
    broken = jnp.array([True, False, False, True])
    def velocity(o, a, t):
        return jnp.where(broken[:, None], jnp.nan, linear_velocity(o, a, t))
    actions, diag = guided_flow_sample(velocity, concave_quadratic_q, obs, noise, beta, num_steps, guidance_at=at)
    healthy, _ = guided_flow_sample(linear_velocity, concave_quadratic_q, obs, noise, beta, num_steps,
                                    guidance_at=at)
    assert np.all(np.isfinite(actions)) and np.all(np.abs(np.asarray(actions)) <= 1.0)
    np.testing.assert_allclose(actions[~broken], healthy[~broken], rtol=1e-5, atol=1e-6)
    assert int(diag['nonfinite_velocity']) == 2 * num_steps and int(diag['nonfinite_fallbacks']) == 0


def test_bad_options_give_one_line_errors():
    obs, noise = inputs(0, 2)
    for kwargs, text in [(dict(beta_schedule='exp'), 'beta_schedule'), (dict(grad_clip=0.0), 'grad_clip'),
                         (dict(trust_ratio=-1.0), 'trust_ratio'), (dict(grid='log'), 'time_grid'),
                         (dict(guidance_at='clean'), 'guidance_at'), (dict(guidance_scale='unit'), 'guidance_scale'),
                         (dict(beta=-0.5), 'beta must be >= 0')]:
        kwargs = {'beta': 1.0, **kwargs}
        with pytest.raises(ValueError, match=text) as err:
            guided_flow_sample(linear_velocity, linear_q, obs, noise, num_steps=2, **kwargs)
        assert '\n' not in str(err.value)
    with pytest.raises(ValueError, match='q_fn is required'):
        guided_flow_sample(linear_velocity, None, obs, noise, 1.0, 2)
