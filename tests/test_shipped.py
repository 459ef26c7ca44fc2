"""The regression test of shipped checkpoints: each must still score what its card says.

Each folder under artifacts/checkpoints/ (written by `python -m harness.card`) is evaluated the way
a user would (`python -m harness.run --checkpoint ... --betas 0,<best>` with the card's sampler
settings) on the card's held-out start states, and both success rates are compared with the card.
Where the card's own intervals show guidance winning (β = best above β = 0 with no overlap), the
re-evaluation must show it too; a card whose selected β is 0, or whose gain is within noise (a Table 1
row that matches the paper without guidance helping), is held to its rates alone. At least one shipped
card must make the guidance claim, so this stays the guidance regression test.

Tolerance. On one machine the evaluation is deterministic (fixed env seeds and sampler keys), so the
card is reproduced exactly. On another machine XLA may sum in another order, and the rollouts, which
are chaotic, then become another draw of the same policy: the measured count is a second binomial
sample with the card's success probability. The difference of two such rates over n episodes has
standard deviation sqrt(2 p (1 - p) / n); we allow 3.29 of them (two-sided 99.9 %), with p estimated
as (k + 1) / (n + 2) so that a card rate of 0 still admits a few successes. Over n = 50 episodes that
is 17 episodes at p = 0.45, 9 at p = 0.05 and 5 at p = 0.

A positive control runs a scripted oracle through the same evaluation path (vector envs, success
flags, episode records): if success were never reported, it would fail too.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from envs.tasks import resolve_task
from envs.vector import make_eval_envs, make_task_env
from harness.card import SHIPPED_ROOT
from harness.checkpoints import CARD_FILE, PARAMS_FILE
from harness.defaults import EVAL_SEED_BASE
from harness.errors import run_main
from harness.evaluate import EpisodeGroup, group_key, rollout
from harness.run import main

REPO_ROOT = Path(__file__).resolve().parents[1]

SHIPPED = sorted(p for p in (REPO_ROOT / SHIPPED_ROOT).glob('*') if (p / CARD_FILE).is_file())


def binomial_tolerance(rate: float, episodes: int, z: float = 3.29) -> float:
    """Largest difference between two independent success rates over `episodes` episodes each that
    is not evidence of a change (see the module docstring), in whole episodes."""
    smoothed = (rate * episodes + 1) / (episodes + 2)
    return math.ceil(z * math.sqrt(2 * smoothed * (1 - smoothed) / episodes) * episodes) / episodes


def test_binomial_tolerance_grows_with_variance_and_shrinks_with_episodes():
    assert binomial_tolerance(0.45, 50) == 17 / 50 and binomial_tolerance(0.0, 50) == 5 / 50
    assert binomial_tolerance(0.5, 200) < binomial_tolerance(0.5, 50)


def shows_guidance(card: dict) -> bool:
    """Whether the card's held-out intervals put the best β above β = 0 with no overlap."""
    best = card['best_beta']
    return best > 0 and card['success'][f'{best:g}']['ci95'][0] > card['success']['0']['ci95'][1]


def test_a_shipped_checkpoint_shows_guidance():
    assert SHIPPED, f'no shipped checkpoint under {SHIPPED_ROOT}/ (python -m harness.card writes them)'
    claims = [p.name for p in SHIPPED if shows_guidance(json.loads((p / CARD_FILE).read_text()))]
    assert claims, 'no shipped card shows guided β beating β = 0 with non-overlapping intervals'


@pytest.mark.slow
@pytest.mark.parametrize('shipped', SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoint_reproduces_its_card(shipped, tmp_path):
    card = json.loads((shipped / CARD_FILE).read_text())
    assert (shipped / PARAMS_FILE).stat().st_size < 8 * 2**20, 'shipped parameters should stay a few MB'
    best = card['best_beta']
    argv = [a if a != card['evaluation']['argv'][1] else str(shipped) for a in card['evaluation']['argv']]
    out = tmp_path / 'eval'
    assert run_main(main, argv + ['--video-episodes', '0', '--out', str(out)]) == 0
    summary = json.loads((out / 'summary.json').read_text())
    measured = {r['beta']: r['success_rate'] for r in summary['results']}
    episodes = card['evaluation']['held_out_episodes']
    assert summary['eval_episodes_per_seed'] == episodes and summary['sampler'] == card['sampler']
    rows = [json.loads(line) for line in (out / 'eval.jsonl').read_text().splitlines()]
    assert {r['env_seed'] for r in rows} == set(range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes))
    for beta in sorted({0.0, best}):
        expected = card['success'][f'{beta:g}']['rate']
        tolerance = binomial_tolerance(expected, episodes)
        assert abs(measured[beta] - expected) <= tolerance, (
            f'{shipped.name}: success at β={beta:g} is {measured[beta]:.2f}, card says {expected:.2f} ± {tolerance:.2f}')
    if shows_guidance(card):
        assert measured[best] > measured[0.0], f'{shipped.name}: guidance (β={best:g}) no longer beats β=0'


def test_oracle_reaches_the_goal_through_the_evaluation_path():
    """Pointmaze's BFS oracle (OGBench's get_oracle_subgoal), acting from the observations alone as a
    policy does, scored by `harness.evaluate.rollout` on the vector envs. With success computed
    before the action ('pre', from s) an episode needs one step more than with 'post' (from s')."""
    task = resolve_task('pointmaze')
    maze_env = make_task_env(task.env_id)
    maze_env.reset(seed=0)
    maze = maze_env.unwrapped
    goal = np.asarray(maze.cur_goal_xy)

    def oracle(observations, keys, episodes, steps, betas):
        actions = []
        for xy in np.asarray(observations)[0, :, :2]:
            subgoal, _ = maze.get_oracle_subgoal(xy, goal)
            actions.append((subgoal - xy) / (np.linalg.norm(subgoal - xy) + 1e-6))
        zeros = np.zeros((1, 1, len(actions)))
        return np.asarray(actions, np.float32)[None], {'velocity_norm': zeros, 'grad_q_norm': zeros, 'guidance_norm': zeros}

    lengths = {}
    try:
        for timing in ('pre', 'post'):
            with make_eval_envs(task, 2, success_timing=timing) as envs:
                (result,), _ = rollout(oracle, envs, [EpisodeGroup('final', 0.0, 0, 2, EVAL_SEED_BASE, group_key(0, 0))], 1)
            assert [e['success'] for e in result.episodes] == [True, True]
            lengths[timing] = np.array([e['length'] for e in result.episodes])
            assert np.all(lengths[timing] < envs.max_episode_steps), 'the episode should end at the goal'
    finally:
        maze_env.close()
    np.testing.assert_array_equal(lengths['pre'], lengths['post'] + 1)
