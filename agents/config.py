"""Agent hyper-parameters: one frozen, hashable dataclass shared by QFQL and FQL.

The config is hashable because agents keep it as a static (non-PyTree) field, so changing any
field triggers a recompile while changing parameters never does. Every network size is a field,
so the same code runs at paper scale and as a tiny CPU model in tests.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from agents.flags import positive, setting

Q_AGGREGATIONS = ('mean', 'min')
TARGET_ACTIONS = ('flow', 'onestep', 'guided')
BETA_SCHEDULES = ('constant', 'linear', 'cosine')
TIME_GRIDS = ('uniform', 'cosine')
# Where ∇Q is taken: at the noisy point a_t (eq. 5), at the one-Euler-step clean estimate
# â = clip(a_t + (1 - t) v) (QGF, Zhou et al. 2026), or at â with the chain rule through v.
GUIDANCE_POINTS = ('noisy', 'denoised', 'denoised-jacobian')
# How β scales the guidance: β∇Q (eq. 5), or β‖v‖ ∇Q/‖∇Q‖, which no rescaling of Q can change.
GUIDANCE_SCALES = ('absolute', 'relative')
CRITICS = ('td', 'expectile')


def _sampler_default(default):
    """An AgentConfig field that is also a SamplerSettings field of the same name (see `sampler_defaults`)."""
    return dataclasses.field(default=default, metadata={'sampler': True})


@dataclass(frozen=True)
class AgentConfig:
    """Hyper-parameters of QFQL and of the FQL baseline (FQL reads `alpha`, `normalize_q_loss`).

    target_action chooses ApproxDenoisedAction(s'; θ), the next action used in the TD target:
      'flow'    -- K-step unguided Euler integration of v_θ from ε ~ N(0, I) (default): an unbiased
                   sample of the behaviour policy, so the critic learns Q of the behaviour policy,
                   the quantity whose action-gradient guidance then follows;
      'onestep' -- ã' = ε + v_θ(s', ε, 0), a single Euler step (≈ the conditional mean action);
                   about K times cheaper, biased towards the mean of multi-modal behaviour;
      'guided'  -- the guided sampler with this run's `beta` (and grad_clip / trust_ratio) using
                   the target critic for guidance, i.e. the critic evaluates the policy that is
                   actually deployed at test time.
    In every case ã' is computed under stop_gradient and clipped to [-1, 1].

    critic chooses how QFQL's critic learns (FQL keeps its own TD critic):
      'td'        -- eq. 4 with the target action above (the paper);
      'expectile' -- in-sample, as IQL: Q(s, a) regresses to r + γ mask V(s'), and V(s) regresses to
                     the target critic's Q(s, a) at dataset actions with the asymmetric weight
                     |τ - 1(Q - V < 0)|, τ = `expectile` (0.9 leans V towards the best dataset
                     actions). It never queries the actor, so the critic never sees an action the
                     data does not contain, and an update draws no actor samples.

    horizon h > 1 makes the agent act on action chunks (agents/chunks.py): the actor's and the critic's
    action is the h·|A| concatenation a_{t:t+h}, the TD target backs up h steps with γ^h, and acting
    executes a chunk open loop. h = 1 is the paper's agent.

    target_flow_steps sets the Euler steps of the 'flow' and 'guided' target actions alone (None:
    flow_steps, as acting uses). The K-step target is about half of a QFQL update's time at paper
    scale (`python -m tools.bench` figure 1p), so fewer steps trade a coarser sample of the
    behaviour policy in the TD target for speed; acting keeps flow_steps.
    """

    actor_hidden: tuple[int, ...] = (512, 512, 512, 512)
    critic_hidden: tuple[int, ...] = (512, 512, 512, 512)
    actor_layer_norm: bool = False
    critic_layer_norm: bool = True
    num_critics: int = 2
    lr: float = 3e-4
    batch_size: int = 256
    # A field made with `setting` is a training setting with a flag of `python -m harness.run` (agents/flags.py):
    # a new run takes the flag, a resumed one refuses a change, and another agent's run refuses one that an
    # agent class names in its CONFIG_FIELDS. Nothing else in the harness names it.
    discount: float = setting(0.99, 'γ of the TD target', parse=float, task_default=True)
    tau: float = 0.005
    flow_steps: int = 10
    q_agg: str = setting('mean', 'target-Q aggregation over the ensemble (TD target)', choices=Q_AGGREGATIONS,
                         task_default=True)
    target_action: str = setting('flow', "QFQL's target action ã' for the TD target (guided uses the run's β)",
                                 choices=TARGET_ACTIONS)
    target_flow_steps: int | None = setting(
        None, "Euler steps of the flow/guided target action only (default: the preset's flow steps, 10)",
        parse=positive(True))
    beta: float = 0.0                # guidance strength of the 'guided' target action (the run's β)
    # The sampler's own settings, whose flags are SamplerSettings' (agents/sampler.py): they are the ones
    # the agent acts with by default and the guided target action trains with.
    guidance_q_agg: str = _sampler_default('mean')  # ensemble aggregation of Q whose gradient guides sampling
    grad_clip: float | None = _sampler_default(None)  # per-sample clip of ‖∇_a Q‖
    trust_ratio: float | None = _sampler_default(None)  # ‖β∇Q‖ ≤ ρ‖v‖ guard
    critic: str = setting('td', "QFQL's critic: td (eq. 4) or expectile (in-sample, IQL-style; no actor samples)",
                          choices=CRITICS)
    expectile: float = setting(0.9, 'τ of the expectile critic', parse=float)
    alpha: float = setting(10.0, 'FQL distillation weight', parse=float,
                           shown_default="the task's, from the FQL paper")
    normalize_q_loss: bool = False   # FQL only: divide the Q loss by stop_grad(mean |Q|)
    horizon: int = setting(1, 'action-chunk length h (1 is the paper): actor and critic act on h env actions at '
                           'once, the critic backs up h steps, and acting runs each chunk open loop',
                           parse=positive(True))

    def __post_init__(self):
        # Lists from JSON / CLI become tuples so that the config stays hashable.
        object.__setattr__(self, 'actor_hidden', tuple(int(h) for h in self.actor_hidden))
        object.__setattr__(self, 'critic_hidden', tuple(int(h) for h in self.critic_hidden))
        checks = [
            (all(h > 0 for h in self.actor_hidden + self.critic_hidden),
             f'hidden sizes must be positive, got actor_hidden={self.actor_hidden} critic_hidden={self.critic_hidden}'),
            (self.num_critics >= 1, f'num_critics must be >= 1, got {self.num_critics}'),
            (self.lr > 0, f'lr must be > 0, got {self.lr}'),
            (self.batch_size >= 1, f'batch_size must be >= 1, got {self.batch_size}'),
            (0.0 <= self.discount <= 1.0, f'discount must be in [0, 1], got {self.discount}'),
            (0.0 < self.tau <= 1.0, f'tau must be in (0, 1], got {self.tau}'),
            (self.flow_steps >= 1, f'flow_steps must be >= 1, got {self.flow_steps}'),
            (self.target_flow_steps is None or self.target_flow_steps >= 1,
             f'target_flow_steps must be >= 1 or None, got {self.target_flow_steps}'),
            (self.q_agg in Q_AGGREGATIONS, f'q_agg must be one of {Q_AGGREGATIONS}, got {self.q_agg!r}'),
            (self.guidance_q_agg in Q_AGGREGATIONS,
             f'guidance_q_agg must be one of {Q_AGGREGATIONS}, got {self.guidance_q_agg!r}'),
            (self.target_action in TARGET_ACTIONS,
             f'target_action must be one of {TARGET_ACTIONS}, got {self.target_action!r}'),
            (self.beta >= 0.0, f'beta must be >= 0, got {self.beta}'),
            (self.critic in CRITICS, f'critic must be one of {CRITICS}, got {self.critic!r}'),
            (0.0 < self.expectile < 1.0, f'expectile must be in (0, 1), got {self.expectile}'),
            (self.grad_clip is None or self.grad_clip > 0, f'grad_clip must be > 0 or None, got {self.grad_clip}'),
            (self.trust_ratio is None or self.trust_ratio >= 0,
             f'trust_ratio must be >= 0 or None, got {self.trust_ratio}'),
            (self.alpha >= 0.0, f'alpha must be >= 0, got {self.alpha}'),
            (self.horizon >= 1, f'horizon must be >= 1, got {self.horizon}'),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def replace(self, **overrides) -> 'AgentConfig':
        """A copy with some fields changed; unknown names give a one-line error listing valid ones."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f'unknown AgentConfig field(s) {unknown}; valid fields: {sorted(valid)}')
        return dataclasses.replace(self, **overrides)


def sampler_defaults(config: AgentConfig) -> dict:
    """The config's sampler settings by name: the agent acts with them unless told otherwise, and a new
    run's sampler flags set them (so that the guided target action trains with what acting uses)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.metadata.get('sampler')}


PRESETS: dict[str, AgentConfig] = {
    # The FQL paper's scale: 4x512 GELU MLPs, critic layer norm, 2 critics, Adam 3e-4, batch 256.
    'paper': AgentConfig(),
    # Trains meaningfully on a 2-core CPU in minutes.
    'small': AgentConfig(actor_hidden=(256, 256, 256), critic_hidden=(256, 256, 256)),
    # For smoke tests and CI: seconds per thousand updates.
    'tiny': AgentConfig(actor_hidden=(64, 64), critic_hidden=(64, 64), batch_size=64),
}


def resolve_config(config: AgentConfig | str | None = None, **overrides) -> AgentConfig:
    """A preset name or a config (None = 'paper'), with field overrides applied."""
    if config is None:
        config = 'paper'
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f'unknown preset {config!r}; choose one of {sorted(PRESETS)}')
        config = PRESETS[config]
    return config.replace(**overrides) if overrides else config
