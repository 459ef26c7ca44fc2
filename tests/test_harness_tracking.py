"""--wandb: a one-line error without the package, and offline unless W&B could really be reached.
What a run sends to W&B is checked end to end by tests/test_harness_ray_sweep.py."""
import sys

from harness.run import main
from harness.tracking import wandb_mode
from tests.cli import run_cli


def test_wandb_flag_without_the_package_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'wandb', None)          # `import wandb` raises ImportError
    status, err = run_cli(main, ['--task', 'pointmaze', '--preset', 'tiny', '--wandb', 'qfql',
                                 '--out', str(tmp_path / 'run')], capsys)
    assert status == 2 and err.count('\n') == 1 and "pip install -e '.[wandb]'" in err
    assert not (tmp_path / 'run').exists()


def test_wandb_runs_offline_without_credentials_and_wandb_mode_decides(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))                # no ~/.netrc with a W&B key
    assert wandb_mode({}) == 'offline'                       # nothing to log in with: no connection is tried
    assert wandb_mode({'WANDB_MODE': 'disabled', 'WANDB_API_KEY': 'k'}) == 'disabled'
    (tmp_path / '.netrc').write_text('machine 127.0.0.1 login user password key\n')
    (tmp_path / '.netrc').chmod(0o600)                      # netrc ignores a file others can read
    # Credentials, but no W&B server answers there (nothing listens on port 443 of this machine): offline.
    assert wandb_mode({'WANDB_BASE_URL': 'https://127.0.0.1'}) == 'offline'
