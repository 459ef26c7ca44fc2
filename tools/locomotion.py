"""How often the locomotion collectors of envs/locomotion.py reach a goal.

`python -m tools.locomotion success DATASET [--episodes N] [--seed S]` replays the first N episodes of a
`python -m envs.generate DATASET --seed S` run (same per-episode seeds, so bit-identical episodes) and
reports the fraction in which the collector reached at least one goal, plus goals reached per episode.
OGBench publishes no such rate for its own collectors; the README compares ours with its description.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from envs.cli import OneLineArgumentParser
from envs.dataset_spec import DatasetError
from envs.generate import episode_seed
from envs.locomotion import DATASETS
from harness.errors import UsageError, run_main


def collector_success(name: str, episodes: int, seed: int = 0, episode_steps: int = 1001) -> dict:
    """Replay the first `episodes` episodes of `envs.generate NAME --seed SEED` and count reached goals."""
    if name not in DATASETS:
        raise DatasetError(f"unknown locomotion dataset '{name}'; choose one of {', '.join(DATASETS)}")
    collect = DATASETS[name].make_collector(episode_steps)
    goals, t0 = [], time.time()
    for i in range(episodes):
        collect(episode_seed(seed, i))
        goals.append(collect.goals_reached)
    goals = np.asarray(goals)
    return {
        'dataset': name,
        'episodes': episodes,
        'seed': seed,
        'episode_steps': episode_steps,
        'success_rate': float(np.mean(goals > 0)),
        'goals_per_episode': float(np.mean(goals)),
        'wall_time_s': round(time.time() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog='python -m tools.locomotion', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('success', help="fraction of a generated dataset's episodes that reached a goal")
    p.add_argument('dataset')
    p.add_argument('--episodes', type=int, default=50)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--episode-steps', type=int, default=1001)
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.episode_steps < 2:
        raise UsageError('--episodes must be >= 1 and --episode-steps >= 2')
    print(json.dumps(collector_success(args.dataset, args.episodes, args.seed, args.episode_steps)))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
