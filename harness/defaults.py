"""Every default and constant of a run in one leaf module: it imports nothing of the project, so any
module may import it without creating a cycle.
"""
from __future__ import annotations

from pathlib import Path

# Defaults that depend on the preset; an explicit flag always wins. Why these numbers:
#   paper -- the paper's protocol (1M updates, 50 evaluation episodes; evaluation every 100k).
#   small -- a CPU: 3-layer 256-wide MLPs (agents' 'small' preset), 15k updates, 20 evaluation
#            episodes at 5k/10k/15k, one video, and a dataset regenerated with 100 episodes when missing.
#   tiny  -- tests and CI smoke runs: 2x64 MLPs, seconds per thousand updates.
PRESET_DEFAULTS = {
    'paper': dict(steps=1_000_000, eval_every=100_000, checkpoint_every=100_000, eval_episodes=50, eval_envs=25,
                  video_episodes=2, chunk=1000, dataset_episodes=None),
    'small': dict(steps=15_000, eval_every=5_000, checkpoint_every=5_000, eval_episodes=20, eval_envs=10,
                  video_episodes=1, chunk=500, dataset_episodes=100),
    'tiny': dict(steps=2_000, eval_every=0, checkpoint_every=1_000, eval_episodes=10, eval_envs=5,
                 video_episodes=0, chunk=250, dataset_episodes=20),
}

# `--recipe cpu`: how the README's "Table 1 on a CPU" trains and sweeps any task on 2 cores; a flag given
# explicitly wins. 40k updates of the small preset for 3 seeds fit a session beside other work; the β
# grid brackets where the small preset's critics steer best (0.1 on every cube-single task, far below
# the paper's 0.3-100 grid); selection episodes choose β and the held-out ones score β = 0 and the choice.
CPU_RECIPE = dict(preset='small', seeds=[11, 12, 13], steps=40_000, eval_every=0, eval_episodes=50,
                  selection_episodes=25, held_out='selected', eval_envs=30, checkpoint_every=5_000,
                  dataset_episodes=1000)
CPU_RECIPE_BETAS = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0]

# `--recipe gpu`: one row of Table 1 at the paper's budget on a GPU machine (1M updates of the paper preset
# on the full data, 8 seeds trained together), with a learning curve every 250k updates at the run's β;
# the β grid spans the small preset's best (0.1) up to the paper's own choices (0.3-1) and beyond.
GPU_RECIPE = dict(preset='paper', seeds=list(range(11, 19)), steps=1_000_000, eval_every=250_000, eval_episodes=50,
                  selection_episodes=25, held_out='selected', eval_envs=48, checkpoint_every=50_000,
                  dataset_episodes=1000)
GPU_RECIPE_BETAS = [0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
RECIPES = {'cpu': (CPU_RECIPE, CPU_RECIPE_BETAS), 'gpu': (GPU_RECIPE, GPU_RECIPE_BETAS)}

# β for tasks where the paper gives none (pointmaze, cube-single, puzzle-3x3, ids outside the table):
# 0.3, the value the paper chose for five of its eight tasks.
DEFAULT_BETA = 0.3

# An exported checkpoint's card: what it scores, beside its params.msgpack (harness/card.py); pages read it
# without loading the checkpoint library.
CARD_FILE = 'card.json'

DEFAULT_OUT_ROOT = Path('artifacts/runs')
DEFAULT_SWEEP_ROOT = Path('artifacts/sweeps')

# Evaluation start states and sampler noise. Held-out episode i starts from env seed EVAL_SEED_BASE + i,
# β-selection episode i from SELECTION_SEED_BASE + i (disjoint, so the β that is reported was not chosen
# on the episodes it is reported on). A seed's sampler key is fold_in(PRNGKey(seed), salt): the same
# noise for every β, other noise for the selection episodes.
EVAL_SEED_BASE = 1_000_000
SELECTION_SEED_BASE = 2_000_000
EVAL_KEY_SALT = 0xE7A1
SELECTION_KEY_SALT = 0x5E1E

# Success from s' (OGBench 1.1, as the FQL and QFQL papers evaluated); OGBench >= 1.2 defaults to s.
DEFAULT_SUCCESS_TIMING = 'post'

FRAMES_PER_VIDEO = 100
RENDER_SIZE = 256
