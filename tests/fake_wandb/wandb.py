"""A stand-in for the wandb package, put first on PYTHONPATH by tests: every call is recorded as one
JSON line in <the run's dir>/fake-wandb.jsonl, so a test can read what a run sent to W&B, from any
process (Ray workers too), without a network or an account."""
import json
from pathlib import Path


class Video:
    def __init__(self, path, format=None):
        self.path = path


class Run:
    def __init__(self, record_path: Path):
        self.record_path = record_path
        self.summary = {}

    def record(self, call: str, **fields) -> None:
        with open(self.record_path, 'a') as stream:
            stream.write(json.dumps({'call': call, **fields}) + '\n')

    def log(self, data, step=None):
        self.record('log', step=step, data={k: v.path if isinstance(v, Video) else v for k, v in data.items()})

    def finish(self):
        self.record('finish', summary=self.summary)


def init(project, name, dir, config, id, resume, mode):
    run = Run(Path(dir) / 'fake-wandb.jsonl')
    run.record('init', project=project, name=name, id=id, resume=resume, mode=mode, config_out=config['out'])
    return run
