"""`python -m tools.diagnose`: where a task's learning signal is lost, in data, critic or actor.

    python -m tools.diagnose --task antsoccer --data-dir ~/qfql-runs/data-antsoccer-100   # the data alone
    python -m tools.diagnose ~/qfql-runs/antsoccer-qfql                                # data, critic, actor

When guidance scores 0 at every β there are three places the signal can be missing, and each has a
number that says so:
* data: how many dataset episodes ever solve the task (the relabelled single-task mask is 0 exactly
  there). With none, no critic trained on the file can know where the goal is.
* critic: Q of the dataset's own actions, grouped by how many steps the episode still needs until it
  next solves the task. A critic with signal ranks states near success above states far from it; its
  ideal value under the task's -1/0 reward is -(1 - γ^d)/(1 - γ) for d steps to go, and -1/(1 - γ)
  (the floor) where the behaviour never succeeds. The discounted return the data actually collected is
  printed beside it.
* actor: success at β = 0 and at the selected β, read from the run's summary.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from agents.chunks import chunk_starts, episode_ids
from harness.errors import OneLineArgumentParser, UsageError, run_main

# Upper edges (inclusive) of the steps-to-success groups; the last group is "never".
STEP_GROUPS = (0, 10, 100, 1000)
NEVER = -1


def steps_to_success(masks: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """For each transition, how many transitions after it the same episode next solves the task
    (0: this one solves it, mask 0), or NEVER."""
    masks, episodes = np.asarray(masks).tolist(), np.asarray(episodes).tolist()
    out = [NEVER] * len(masks)
    following = NEVER
    for i in range(len(masks) - 1, -1, -1):
        if i == len(masks) - 1 or episodes[i + 1] != episodes[i]:
            following = NEVER
        if masks[i] == 0:
            following = i
        out[i] = NEVER if following == NEVER else following - i
    return np.asarray(out, np.int64)


def discounted_return(rewards: np.ndarray, masks: np.ndarray, episodes: np.ndarray, discount: float) -> np.ndarray:
    """The return each transition collected in the data, r_t + γ m_t r_{t+1} + ..., cut at the episode's
    end and, as the TD target is, at a solved transition (mask 0)."""
    rewards, masks, episodes = (np.asarray(x).tolist() for x in (rewards, masks, episodes))
    out = [0.0] * len(rewards)
    following = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        if i == len(rewards) - 1 or episodes[i + 1] != episodes[i]:
            following = 0.0
        following = rewards[i] + discount * masks[i] * following
        out[i] = following
    return np.asarray(out, np.float64)


def group_of(steps: np.ndarray) -> np.ndarray:
    """Index into STEP_GROUPS of each steps-to-success count, len(STEP_GROUPS) for NEVER and beyond."""
    groups = np.searchsorted(np.asarray(STEP_GROUPS), steps, side='left')
    return np.where(steps == NEVER, len(STEP_GROUPS), groups)


def group_labels() -> list[str]:
    labels, low = [], 0
    for high in STEP_GROUPS:
        labels.append(f'{low}' if low == high else f'{low}-{high}')
        low = high + 1
    return labels + ['never']


def ideal_q(steps: np.ndarray, discount: float) -> np.ndarray:
    """Q of the behaviour under a -1-per-step reward that stops at success: -(1 - γ^d)/(1 - γ); the floor
    -1/(1 - γ) where it never succeeds."""
    floor = -1.0 / (1.0 - discount)
    return np.where(steps == NEVER, floor, floor * (1.0 - discount ** np.maximum(steps, 0)))


def data_lines(dataset: dict, episodes: np.ndarray) -> list[str]:
    solved = dataset['masks'] == 0
    solving_episodes = np.unique(episodes[solved])
    total = int(episodes[-1]) + 1
    lines = [f'data: {len(solving_episodes)}/{total} episodes ever solve the task '
             f'({int(solved.sum()):,} of {len(solved):,} transitions, {100 * solved.mean():.2f} %)']
    if len(solving_episodes):
        first = [int(np.argmax(solved[episodes == e])) for e in solving_episodes]
        lines.append(f'      first success after {int(np.median(first))} steps on median '
                     f'(min {min(first)}, max {max(first)})')
    return lines


def critic_table(q: np.ndarray, steps: np.ndarray, collected: np.ndarray, discount: float,
                 sparse: bool) -> list[str]:
    """One Markdown row per steps-to-success group: transitions, mean Q of the dataset action, the return
    the data collected and, for a -1/0 reward (`sparse`), the ideal Q; a dense reward that counts unsolved
    subtasks has no such closed form."""
    groups = group_of(steps)
    ideal = ideal_q(steps, discount)
    rows = ['| steps until the episode next solves the task | transitions | mean Q (dataset action) | '
            'return collected | ideal Q (-1 per step) |', '|---|---|---|---|---|']
    for index, label in enumerate(group_labels()):
        chosen = groups == index
        if not chosen.any():
            rows.append(f'| {label} | 0 | — | — | — |')
            continue
        ideal_cell = f'{ideal[chosen].mean():.1f}' if sparse else '—'
        rows.append(f'| {label} | {int(chosen.sum()):,} | {q[chosen].mean():.1f} | {collected[chosen].mean():.1f} | '
                    f'{ideal_cell} |')
    return rows


def critic_values(run_dir: Path, dataset: dict, seed_index: int, step: int | None
                  ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Q of the dataset's own actions under one seed's critic (ensemble mean) at checkpoint `step` (None:
    the newest): (Q, the transitions it scores, the seed, the checkpoint step). A horizon-h critic scores
    the chunk a_{t:t+h} the data took from each t whose h transitions lie in one episode."""
    import jax
    import jax.numpy as jnp

    from agents.training import select_seed
    from harness.checkpoints import checkpoint_dir, find_checkpoint, read_meta, restore_as_trained

    checkpoint = find_checkpoint(run_dir if step is None else checkpoint_dir(run_dir / 'checkpoints', step))
    meta = read_meta(checkpoint)
    seeds = list(meta['seeds'])
    if not 0 <= seed_index < len(seeds):
        raise UsageError(f'--seed-index {seed_index} is out of range: the run has {len(seeds)} seed(s) {seeds}')
    observations, actions = dataset['observations'], dataset['actions']
    agents, _ = restore_as_trained(checkpoint, observations.shape[1], actions.shape[1], f"task {meta['task']['env_id']}")
    agent = select_seed(agents, seed_index)
    horizon = int(meta['config'].get('horizon', 1))
    starts = chunk_starts(observations, dataset['next_observations'], horizon)
    q_of = jax.jit(lambda obs, act: agent.critic_values(agent.params['critic'], obs, act).mean(axis=0))
    values = []
    for block in np.array_split(starts, max(1, -(-len(starts) // 65536))):
        chunk_actions = actions[block[:, None] + np.arange(horizon)].reshape(len(block), -1)
        values.append(np.asarray(q_of(jnp.asarray(observations[block]), jnp.asarray(chunk_actions))))
    return np.concatenate(values), starts, seeds[seed_index], int(meta['step'])


def actor_lines(run_dir: Path) -> list[str]:
    path = run_dir / 'summary.json'
    if not path.is_file():
        return [f'actor: no summary.json in {run_dir} (the run has not finished its final evaluation)']
    summary = json.loads(path.read_text())
    rates = {}
    for result in summary.get('results', []):
        rates.setdefault(float(result['beta']), result)
    lines = []
    for beta in sorted({0.0, float(summary.get('best_beta') or 0.0)}):
        if beta in rates:
            r = rates[beta]
            episodes = r['episodes_per_seed'] * len(r['seeds'])
            lines.append(f"actor: held-out success at β = {beta:g}: {r['success_rate']:.2f} "
                         f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] over {episodes} episodes")
    return lines or ['actor: the summary holds no per-β results']


def parse_args(argv):
    p = OneLineArgumentParser(prog='python -m tools.diagnose',
                              description='Where a task\'s learning signal is lost: data, critic, actor.')
    p.add_argument('run', nargs='?', help='a run folder (its task, data and checkpoint); omit with --task for the data alone')
    p.add_argument('--task', help='a task name or single-task id (data only, without a run folder)')
    p.add_argument('--data-dir', help='dataset folder (default: the run\'s, else ~/.ogbench/data)')
    p.add_argument('--seed-index', type=int, default=0, help='which of the run\'s seeds to probe (default the first)')
    p.add_argument('--step', type=int, help='probe the critic of this checkpoint step (default the newest), e.g. to '
                                            'follow how far the values have propagated over training')
    args = p.parse_args(argv)
    if (args.run is None) == (args.task is None):
        p.error('give a run folder or --task, not both and not neither')
    return args


def main(argv=None) -> int:
    from envs.datasets import DEFAULT_DATA_DIR, load_task_dataset
    from envs.tasks import resolve_task

    args = parse_args(argv)
    run_dir = Path(args.run).expanduser() if args.run else None
    if run_dir is not None:
        config_path = run_dir / 'config.json'
        if not config_path.is_file():
            raise UsageError(f'{run_dir} has no config.json; give a run folder written by python -m harness.run')
        config = json.loads(config_path.read_text())
        task = resolve_task(config['task']['name'] or config['task']['env_id'])
        data_dir, reward = args.data_dir or config['data_dir'], config.get('reward', 'dense')
        discount = float(config['config']['discount'])
    else:
        task = resolve_task(args.task)
        data_dir, reward, discount = args.data_dir or DEFAULT_DATA_DIR, 'dense', task.discount
    dataset = load_task_dataset(task, data_dir, reward=reward)
    episodes = episode_ids(dataset['observations'], dataset['next_observations'])
    sparse = bool(np.isin(dataset['rewards'], (-1.0, 0.0)).all())
    rewards = 'rewards 0 when solved, else -1' if sparse else "OGBench's dense rewards (minus unsolved subtasks)"
    print(f'{task.env_id}: {task.dataset_name} in {data_dir}, {rewards}, γ = {discount}')
    for line in data_lines(dataset, episodes):
        print(line)
    if run_dir is None:
        return 0
    steps = steps_to_success(dataset['masks'], episodes)
    collected = discounted_return(dataset['rewards'], dataset['masks'], episodes, discount)
    q, scored, seed, step = critic_values(run_dir, dataset, args.seed_index, args.step)
    what = 'actions' if len(scored) == len(steps) else 'action chunks'
    steps, collected = steps[scored], collected[scored]
    print(f'critic: seed {seed}, checkpoint step {step}; Q of the dataset\'s {what} by steps to the next success')
    for line in critic_table(q, steps, collected, discount, sparse):
        print(line)
    for line in actor_lines(run_dir):
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
