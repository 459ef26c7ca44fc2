"""What `harness.run` says a training run will cost before it starts, and the CPU recipe it names."""
import pytest

from harness.config import plan_run
from harness.costs import describe_costs, training_costs
from harness.defaults import CPU_RECIPE, CPU_RECIPE_BETAS, GPU_RECIPE, GPU_RECIPE_BETAS
from harness.run import apply_recipe, build_parser
from tests.cli import run_cli
from harness.run import main


def planned(argv, tmp_path):
    args = build_parser().parse_args(argv + ['--out', str(tmp_path / 'run')])
    if args.recipe:
        apply_recipe(args)
    return plan_run(args)


def test_the_headline_command_states_its_cost_and_names_the_cpu_recipe(tmp_path):
    config = planned(['--task', 'antsoccer', '--beta', '1'], tmp_path)
    costs = training_costs(config, dataset_missing=True, cores=2)
    assert costs['dataset'] > 3600 and costs['training'] > 6 * 3600      # the collector; 1M paper updates
    lines = describe_costs(config, dataset_missing=True, cores=2)
    assert 'regenerating antsoccer-arena-navigate-v0 (1000 episodes)' in lines[0]
    assert lines[1].endswith('python -m harness.run --task antsoccer --recipe cpu')
    present = describe_costs(config, dataset_missing=False, cores=2)
    assert 'regenerating' not in present[0]


def test_the_recipe_fills_unset_flags_and_explicit_flags_win(tmp_path):
    config = planned(['--task', 'cube-double', '--recipe', 'cpu', '--steps', '1000'], tmp_path)
    assert (config.preset, config.seeds, config.steps) == ('small', CPU_RECIPE['seeds'], 1000)
    assert config.final_betas == CPU_RECIPE_BETAS and config.held_out == 'selected'
    assert (config.selection_episodes, config.eval_episodes, config.dataset_episodes) == (25, 50, 1000)
    recipe = training_costs(config, dataset_missing=False, cores=2)
    paper = training_costs(planned(['--task', 'cube-double'], tmp_path / 'paper'), dataset_missing=False, cores=2)
    assert recipe['training'] < paper['training'] / 10
    # FQL has no β to sweep; one seed given explicitly replaces the recipe's three.
    fql = planned(['--task', 'cube-double', '--recipe', 'cpu', '--agent', 'fql', '--seed', '4'], tmp_path / 'fql')
    assert fql.seeds == [4] and fql.final_betas == [0.0]


def test_the_recipe_is_for_training_only(tmp_path, capsys):
    status, err = run_cli(main, ['--recipe', 'cpu', '--resume', str(tmp_path)], capsys)
    assert status == 2 and '--recipe shapes a new training run' in err


def test_the_gpu_recipe_is_the_papers_budget_and_its_plan_uses_the_gpu_rates(tmp_path):
    config = planned(['--task', 'antsoccer', '--recipe', 'gpu'], tmp_path)
    assert (config.preset, config.seeds, config.steps) == ('paper', GPU_RECIPE['seeds'], 1_000_000)
    assert len(config.seeds) == 8 and config.final_betas == GPU_RECIPE_BETAS and config.dataset_episodes == 1000
    gpu = training_costs(config, dataset_missing=True, cores=16, backend='gpu')
    cpu = training_costs(config, dataset_missing=True, cores=2, backend='cpu')
    # 8 seeds advance together on the GPU; on the CPU each seed costs its own updates.
    assert gpu['training'] < 3600 < cpu['training'] / 8
    assert gpu['dataset'] == pytest.approx(cpu['dataset'] * 2 / 16)
    lines = describe_costs(config, dataset_missing=False, cores=16, backend='cuda')
    assert len(lines) == 1 and 'this CUDA machine' in lines[0] and 'H200' in lines[0] and 'regenerating' not in lines[0]
