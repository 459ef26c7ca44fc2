"""Optional Weights & Biases logging (`--wandb PROJECT`): training metrics, evaluations and videos.

The run folder stays the record of a run; W&B only mirrors it, so the harness talks to a `Tracker`
whose default does nothing and never asks whether tracking is on. `WandbTracker` is called at the
same places metrics.jsonl, eval.jsonl and summary.json are written.

W&B would hang on a machine without a network (or prompt for a login without an account), so the
mode is decided here: `WANDB_MODE` when set; otherwise online only with W&B credentials and the
server reachable, and offline else (the run lands in <run>/wandb/; `wandb sync` uploads it later).
"""
from __future__ import annotations

import hashlib
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from harness.errors import UsageError

CONNECT_TIMEOUT_S = 2.0


class Tracker:
    """Receives what a run writes; this default drops it."""

    def log_training(self, step: int, rows: list[dict]) -> None:
        """One chunk's metrics.jsonl rows (one per seed)."""

    def log_evaluation(self, step: int, phase: str, results: list[dict]) -> None:
        """Per-β summaries of one evaluation (periodic, final or sweep)."""

    def finish(self, summary: dict, out: Path) -> None:
        """The run's summary.json, and its videos under `out`."""


def import_wandb():
    """The wandb module, or the one line that says how to install it."""
    try:
        import wandb
    except ImportError:
        raise UsageError("--wandb needs the wandb package: pip install -e '.[wandb]'") from None
    return wandb


def wandb_mode(environ=os.environ) -> str:
    """'online' only when W&B could be reached with credentials; WANDB_MODE, when set, decides."""
    if environ.get('WANDB_MODE'):
        return environ['WANDB_MODE']
    host = urlparse(environ.get('WANDB_BASE_URL', 'https://api.wandb.ai')).hostname or 'api.wandb.ai'
    if not (environ.get('WANDB_API_KEY') or _netrc_has(host)):
        return 'offline'
    try:
        socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return 'offline'
    return 'online'


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker(Tracker):
    """One W&B run per run folder. Its id is derived from the folder, so a --resume continues the same
    W&B run; training metrics are the mean over seeds (per-seed rows stay in metrics.jsonl)."""

    def __init__(self, config):
        self.wandb = import_wandb()
        out = Path(config.out).resolve()
        self.run = self.wandb.init(project=config.wandb, name=out.name, dir=str(out), config=config.to_json(),
                                   id=hashlib.sha1(str(out).encode()).hexdigest()[:16], resume='allow',
                                   mode=wandb_mode())

    def log_training(self, step: int, rows: list[dict]) -> None:
        keys = [k for k in rows[0] if k not in ('step', 'seed')]
        self.run.log({f'train/{k}': float(np.mean([row[k] for row in rows])) for k in keys}, step=step)

    def log_evaluation(self, step: int, phase: str, results: list[dict]) -> None:
        data = {}
        for r in results:
            data[f'{phase}/success@beta{r["beta"]:g}'] = r['success_rate']
            data[f'{phase}/iqm@beta{r["beta"]:g}'] = r['iqm']
        self.run.log(data, step=step)

    def finish(self, summary: dict, out: Path) -> None:
        videos = {f'video/{Path(p).stem}': self.wandb.Video(str(out / p), format='mp4') for p in summary['videos']}
        if videos:
            self.run.log(videos, step=summary['steps'])
        self.run.summary.update({'best_beta': summary['best_beta'],
                                 **{f'success@beta{r["beta"]:g}': r['success_rate'] for r in summary['results']}})
        self.run.finish()


def make_tracker(config) -> Tracker:
    return WandbTracker(config) if config.wandb else Tracker()
