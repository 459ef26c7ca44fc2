"""python -m harness.sweep: tasks × agents × seeds trained as Ray tasks, β sweeps of every QFQL
checkpoint, and one report beside the paper's Table 1.

    python -m harness.sweep --tasks pointmaze --seeds 0,1 --preset tiny --steps 300 --betas 0,1 --out DIR
    python -m harness.sweep --tasks antsoccer,scene --seeds 0-7 --betas 0.3,1,3 --gpus-per-job 1 \\
        --address auto --out DIR                      # on a running Ray cluster (or set RAY_ADDRESS)

Jobs. A training job (task, agent, group of seeds) is a Ray task asking for --cpus-per-job CPUs and
--gpus-per-job GPUs that runs `python -m harness.run` in-process into DIR/runs/<task>-<agent>-s<seeds>/.
When a QFQL job has finished, a β-sweep job (`--checkpoint RUN --betas ... --selection-episodes ...`)
scores its checkpoint on the same node, where the checkpoint is, into DIR/sweeps/<the same name>/.
FQL has no β: its training run's own evaluation is its result.

What comes back. Each job returns its summary.json to the driver, which keeps it in DIR/results/
<job>.json and builds DIR/report.md, report.csv and success_vs_beta.png from those alone: the report
needs no shared filesystem. Run folders (checkpoints, videos, eval logs) and each job's output
(DIR/logs/<job>.log) stay on the disk of the node that ran the job, unless DIR is shared.

Faults. A job that fails (an error, a crashed worker, a lost node) runs again, up to --retries more
times, continuing from its last checkpoint when that is on the node it lands on; then it is reported
and the sweep goes on without it. Running the same command again skips every job with a result and
resumes the others. Ctrl-C cancels the jobs in flight and exits with status 130.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from agents import AGENTS
from envs.tasks import resolve_task
from harness import run
from harness.files import write_json_atomic
from harness.config import check_writable
from harness.defaults import PRESET_DEFAULTS
from harness.errors import USER_ERRORS, OneLineArgumentParser, UsageError, one_line, run_main
from harness.outputs import fmt_seconds
from harness.page import PAGE
from harness.sweep_report import build_arms, write_report
from harness.tracking import import_wandb

# The flags of `python -m harness.run` that every job takes as given, by destination and in the order a
# job's argv lists them; the training-only ones go to training jobs only. The sweep's parser copies
# them from harness.run's (flag, type, choices, help), so they are declared once.
EVALUATION_FLAGS = ('eval_episodes', 'eval_envs', 'video_episodes', 'success_timing', 'wandb')
TRAINING_FLAGS = ('preset', 'steps', 'horizon', 'eval_every', 'checkpoint_every', 'data_dir', 'dataset_episodes',
                  'reward', 'download')
RUN_FLAGS = {action.dest: action for action in run.build_parser()._actions}


class JobFailed(Exception):
    """A job's `python -m harness.run` did not finish; str is one line naming its log."""


@dataclass(frozen=True)
class Job:
    name: str                      # unique in the sweep; also the name of its folder and log
    kind: str                      # 'train' | 'betas'
    task: str
    agent: str
    seeds: tuple[int, ...]
    argv: tuple[str, ...]          # python -m harness.run arguments, without --out / --resume
    out: str                       # absolute: the run (train) or sweep (betas) folder on the node that runs it
    log: str
    needs: str | None = None       # the training job whose checkpoint a β sweep scores

    def describe(self) -> str:
        seeds = ','.join(map(str, self.seeds))
        what = 'train' if self.kind == 'train' else 'β sweep of'
        return f'{what} {self.agent} on {self.task}, seeds {seeds}'


# ---- planning (pure) -----------------------------------------------------------------------------------
def seed_groups(seeds: Sequence[int], per_job: int | None) -> list[tuple[int, ...]]:
    """Seeds split into jobs of `per_job` (None: all in one job, trained together with vmap)."""
    size = per_job or len(seeds)
    return [tuple(seeds[i:i + size]) for i in range(0, len(seeds), size)]


def _flags(args, dests: Sequence[str]) -> list[str]:
    argv = []
    for dest in dests:
        flag, value = RUN_FLAGS[dest].option_strings[0], getattr(args, dest)
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


def plan_jobs(args, out: Path) -> list[Job]:
    """Every job of the sweep: per task, agent and seed group a training job, and for QFQL a β sweep of
    its checkpoint. `out` is absolute, so every node writes to the same path."""
    evaluation = _flags(args, EVALUATION_FLAGS)
    selection = [] if args.selection_episodes is None else ['--selection-episodes', str(args.selection_episodes)]
    jobs = []
    for task in args.tasks:
        for agent in args.agents:
            for seeds in seed_groups(args.seeds, args.seeds_per_job):
                name = f"{task.replace('/', '_')}-{agent}-s{'_'.join(map(str, seeds))}"
                train = Job(name, 'train', task, agent, seeds,
                            ('--task', task, '--agent', agent, '--seeds', ','.join(map(str, seeds)),
                             *_flags(args, TRAINING_FLAGS), *evaluation),
                            str(out / 'runs' / name), str(out / 'logs' / f'{name}.log'))
                jobs.append(train)
                if AGENTS[agent].BETA is not None:
                    betas = ','.join(f'{b:g}' for b in args.betas)
                    jobs.append(Job(f'{name}-betas', 'betas', task, agent, seeds,
                                    ('--checkpoint', train.out, '--betas', betas, *selection, *evaluation),
                                    str(out / 'sweeps' / name), str(out / 'logs' / f'{name}-betas.log'),
                                    needs=train.name))
    return jobs


def job_env(gpus_per_job: float, cluster_gpus: float) -> dict[str, str]:
    """Environment of a job's worker. JAX takes every GPU it sees and 75 % of its memory: a CPU-only
    job on a GPU node must not see the GPU, and jobs sharing one must split its memory."""
    if gpus_per_job == 0:
        return {'JAX_PLATFORMS': 'cpu'} if cluster_gpus else {}
    if gpus_per_job < 1:
        return {'XLA_PYTHON_CLIENT_MEM_FRACTION': f'{0.9 * gpus_per_job:.2f}'}
    return {}


# ---- one job, on a Ray worker ----------------------------------------------------------------------------
def run_job(job: Job) -> dict:
    """Run one job to its summary and return the record the driver keeps. A finished folder is not run
    again; a training run cut short continues with --resume; anything else left in the folder (a β
    sweep or a run stopped before its config.json) is cleared and started again. The job's output goes
    to its log; a failure raises JobFailed with its one-line reason."""
    import ray

    started = time.perf_counter()
    out = Path(job.out)
    summary_path = out / 'summary.json'
    if not summary_path.is_file():
        if job.kind == 'train' and (out / 'config.json').is_file():
            argv = [*job.argv, '--resume', str(out)]
        else:
            shutil.rmtree(out, ignore_errors=True)
            argv = [*job.argv, '--out', str(out)]
        _run_harness(argv, Path(job.log))
    return {'job': job.name, 'argv': list(job.argv), 'summary': json.loads(summary_path.read_text()),
            'node_id': ray.get_runtime_context().get_node_id(), 'wall_s': round(time.perf_counter() - started, 2)}


def _run_harness(argv: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'a') as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        print(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} python -m harness.run {' '.join(argv)}", flush=True)
        try:
            status = run.main(argv)
        except USER_ERRORS as error:
            print(f'error: {one_line(error)}')
            raise JobFailed(f'{one_line(error)} (log: {log})') from None
        except (Exception, SystemExit) as error:   # noqa: BLE001 -- whatever stops a job is reported, not fatal
            traceback.print_exc()
            raise JobFailed(f'{type(error).__name__}: {one_line(error)} (log: {log})') from None
    if status != 0:
        raise JobFailed(f'python -m harness.run exited with {status} (log: {log})')


# ---- the driver -------------------------------------------------------------------------------------------
@dataclass
class InFlight:
    job: Job
    attempt: int
    submitted: float


def failure_reason(error: BaseException) -> str:
    """One line for a failed job: JobFailed's own, else the Ray error's cause (a crashed worker, a lost node)."""
    cause = getattr(error, 'cause', None) or error
    if isinstance(cause, JobFailed):
        return str(cause)
    return f'{type(cause).__name__}: {one_line(cause)}'


class Driver:
    """Submits ready jobs to Ray, retries failures, records results; see the module docstring."""

    def __init__(self, ray, jobs: list[Job], out: Path, args, job_fn: Callable[[Job], dict]):
        self.ray, self.jobs, self.out, self.args = ray, jobs, out, args
        self.remote = ray.remote(job_fn)
        self.records = load_records(out, jobs)
        self.failed: dict[str, str] = {}
        self.in_flight: dict = {}
        self.bar = None

    def say(self, line: str) -> None:
        tqdm.write(line, file=sys.stdout)

    def submit(self, job: Job, attempt: int) -> None:
        options = {'num_cpus': self.args.cpus_per_job, 'num_gpus': self.args.gpus_per_job, 'max_retries': 0}
        env = job_env(self.args.gpus_per_job, self.ray.cluster_resources().get('GPU', 0))
        if env:
            options['runtime_env'] = {'env_vars': env}
        if self.args.gpus_per_job:
            options['max_calls'] = 1        # a finished JAX process keeps its GPU memory: one job per worker
        if job.needs:
            node = self.records[job.needs]['node_id']
            if any(n['NodeID'] == node and n['Alive'] for n in self.ray.nodes()):
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
                options['scheduling_strategy'] = NodeAffinitySchedulingStrategy(node, soft=False)
        ref = self.remote.options(**options).remote(job)
        self.in_flight[ref] = InFlight(job, attempt, time.perf_counter())
        self.say(f'start   {job.name}: {job.describe()}' + (f' (attempt {attempt})' if attempt > 1 else ''))

    def ready(self) -> list[Job]:
        running = {f.job.name for f in self.in_flight.values()}
        return [j for j in self.jobs if j.name not in self.records and j.name not in self.failed
                and j.name not in running and (j.needs is None or j.needs in self.records)]

    def finish(self, flight: InFlight, record: dict) -> None:
        job = flight.job
        record['attempts'] = flight.attempt
        (self.out / 'results').mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / 'results' / f'{job.name}.json', record)
        self.records[job.name] = record
        rates = ', '.join(f"{r['success_rate']:.2f} at β = {r['beta']:g}" for r in record['summary']['results'])
        self.say(f"done    {job.name} in {fmt_seconds(record['wall_s'])} on node {record['node_id'][:8]}: "
                 f'held-out success {rates}')
        self.bar.update()

    def fail(self, flight: InFlight, reason: str) -> None:
        job, elapsed = flight.job, fmt_seconds(time.perf_counter() - flight.submitted)
        if flight.attempt <= self.args.retries:
            self.say(f'failed  {job.name} after {elapsed} (attempt {flight.attempt} of {self.args.retries + 1}): '
                     f'{reason}; retrying')
            self.submit(job, flight.attempt + 1)
            return
        self.say(f'gave up {job.name} after {flight.attempt} attempts: {reason}')
        self.failed[job.name] = reason
        self.bar.update()
        for dependent in (j for j in self.jobs if j.needs == job.name):
            self.say(f'skipped {dependent.name}: its training job {job.name} failed')
            self.failed[dependent.name] = f'needs {job.name}, which failed'
            self.bar.update()

    def run(self) -> int:
        todo = len(self.jobs) - len(self.records)
        self.say(f'sweep: {len(self.jobs)} jobs, {len(self.records)} already done (DIR/results), {todo} to run')
        self.bar = tqdm(total=len(self.jobs), initial=len(self.records), unit='job', desc='jobs', file=sys.stdout,
                        dynamic_ncols=True, disable=None)     # no bar when the output is not a terminal
        try:
            for job in self.ready():
                self.submit(job, 1)
            while self.in_flight:
                done, _ = self.ray.wait(list(self.in_flight), num_returns=1)
                flight = self.in_flight.pop(done[0])
                try:
                    record = self.ray.get(done[0])
                except Exception as error:     # noqa: BLE001 -- a job's failure never stops the sweep
                    self.fail(flight, failure_reason(error))
                else:
                    self.finish(flight, record)
                for job in self.ready():
                    self.submit(job, 1)
        except KeyboardInterrupt:
            for ref in self.in_flight:
                self.ray.cancel(ref, force=True)
            self.bar.close()
            print(f'\nerror: interrupted; {len(self.in_flight)} running job(s) cancelled. Run the same command '
                  'again to continue: finished jobs are kept, interrupted runs resume from their checkpoints',
                  file=sys.stderr)
            return 130
        self.bar.close()
        return 0


def load_records(out: Path, jobs: list[Job]) -> dict[str, dict]:
    """The results of earlier runs of this sweep; one made with other settings is refused."""
    records = {}
    for job in jobs:
        path = out / 'results' / f'{job.name}.json'
        if path.is_file():
            record = json.loads(path.read_text())
            if tuple(record['argv']) != job.argv:
                raise UsageError(f"--out {out} holds job {job.name} run with other settings "
                                 f"({' '.join(record['argv'])}); rerun with those, or choose a new --out")
            records[job.name] = record
    return records


def report_header(args, command: str) -> str:
    preset = args.preset or 'paper'
    steps = args.steps or PRESET_DEFAULTS[preset]['steps']
    episodes = args.eval_episodes or PRESET_DEFAULTS[preset]['eval_episodes']
    selection = args.selection_episodes if args.selection_episodes is not None else episodes
    return (f'`{command}`\n\npreset {preset}, {steps} updates, seeds {",".join(map(str, args.seeds))}; {episodes} '
            f'held-out episodes per seed and β' + (f', β chosen on {selection} selection episodes per seed'
                                                   if len(args.betas) > 1 and selection else ''))


# ---- the command line ---------------------------------------------------------------------------------------
def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("python -m harness.sweep needs Ray: pip install -e '.[cluster]'") from None
    return ray


def connect(ray, args) -> bool:
    """Attach to --address / RAY_ADDRESS, or start Ray here; True when this call started it (and so
    shuts it down). A Ray session already open in this process is used as it is."""
    if ray.is_initialized():
        return False
    address = args.address or os.environ.get('RAY_ADDRESS')
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)   # each job's output is in its log
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=args.num_cpus or os.cpu_count(), num_gpus=args.num_gpus, include_dashboard=False,
                     **quiet)
    except Exception as error:   # noqa: BLE001 -- Ray reports a failed start or connection as a bare Exception
        where = f'reach the Ray cluster at {address}' if address else 'start Ray on this machine'
        raise UsageError(f'could not {where}: {one_line(error)}') from None
    return True


def main(argv: Sequence[str] | None = None, job_fn: Callable[[Job], dict] = run_job) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    for task in args.tasks:
        resolve_task(task)                         # an unknown task is one line now, not a failed job later
    guided = [AGENTS[agent].TITLE for agent in args.agents if AGENTS[agent].BETA is not None]
    if guided and not args.betas:
        unguided = ','.join(name for name, agent_class in AGENTS.items() if agent_class.BETA is None)
        raise UsageError(f"--betas is needed to sweep {', '.join(guided)}, e.g. --betas 0,0.3,1,3 (or --agents {unguided})")
    if (args.address or os.environ.get('RAY_ADDRESS')) and (args.num_cpus or args.num_gpus is not None):
        raise UsageError('--num-cpus/--num-gpus size a Ray instance started here; a cluster (--address, RAY_ADDRESS) '
                         'has its own, so drop them')
    if args.wandb:
        import_wandb()
    out = Path(args.out).expanduser().absolute()
    check_writable(out)
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).expanduser().absolute())
    jobs = plan_jobs(args, out)
    ray = import_ray()
    started_here = connect(ray, args)
    try:
        driver = Driver(ray, jobs, out, args, job_fn)
        status = driver.run()
        if status:
            return status
    finally:
        if started_here:
            ray.shutdown()
    command = ' '.join(['python -m harness.sweep', *argv])
    pages = [(job.describe(), os.path.relpath(Path(job.out) / PAGE, out)) for job in jobs
             if (Path(job.out) / PAGE).is_file()]
    paths = write_report(out, build_arms(jobs, driver.records), report_header(args, command), pages)
    print(f"{len(driver.records)} of {len(jobs)} jobs done, {len(driver.failed)} failed; report: "
          + ', '.join(str(p) for p in paths))
    return 1 if driver.failed else 0


def _csv_of(parse):
    def parse_list(text: str):
        values = [parse(part.strip()) for part in text.split(',') if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got '{text}'")
        return list(dict.fromkeys(values))
    return parse_list


def _agent(text: str) -> str:
    if text not in AGENTS:
        raise argparse.ArgumentTypeError(f"unknown agent '{text}'; choose from {', '.join(AGENTS)}")
    return text


def _copy_flag(parser, action: argparse.Action) -> None:
    """harness.run's flag as it is there, except that a flag left out is None (False for a switch)."""
    if action.nargs == 0:
        parser.add_argument(*action.option_strings, dest=action.dest, action='store_true', help=action.help)
    else:
        parser.add_argument(*action.option_strings, dest=action.dest, type=action.type, choices=action.choices,
                            metavar=action.metavar, help=action.help)


def build_parser():
    p = OneLineArgumentParser(prog='python -m harness.sweep', description=__doc__.split('\n\n')[0])
    p.add_argument('--tasks', type=_csv_of(str), required=True, help='comma-separated tasks (names as for --task)')
    p.add_argument('--agents', type=_csv_of(_agent), default=list(AGENTS),
                   help=f"comma-separated, of {', '.join(AGENTS)} (default all)")
    p.add_argument('--seeds', type=run.seed_list, default=[0], help="e.g. '0,1,2' or '0-4' (default 0)")
    p.add_argument('--seeds-per-job', type=run.positive_int,
                   help='seeds per training job (default: all, trained together with vmap; 1 spreads them out)')
    p.add_argument('--betas', type=run.beta_list,
                   help='βs for the sweep of each agent that acts with one, e.g. 0,0.3,1,3 (needed with such an agent)')
    p.add_argument('--selection-episodes', type=run.nonnegative_int,
                   help='episodes per seed and β that choose the best β (default: as many as --eval-episodes)')
    for dest in TRAINING_FLAGS + EVALUATION_FLAGS:
        _copy_flag(p, RUN_FLAGS[dest])
    p.add_argument('--out', required=True, help='the sweep folder: runs/, sweeps/, logs/, results/, report.*')
    ray = p.add_argument_group('Ray')
    ray.add_argument('--address', help="a running Ray cluster ('auto', or host:port; default: RAY_ADDRESS, else "
                                       'start Ray on this machine)')
    ray.add_argument('--num-cpus', type=run.positive_int, help='CPUs of a Ray started here (default: all)')
    ray.add_argument('--num-gpus', type=run.nonnegative_int, help='GPUs of a Ray started here (default: all)')
    ray.add_argument('--cpus-per-job', type=run.positive_float, default=1.0, help='CPUs each job asks for (default 1)')
    ray.add_argument('--gpus-per-job', type=run.nonnegative_float, default=0.0,
                     help='GPUs each job asks for (default 0; a fraction shares one GPU)')
    ray.add_argument('--retries', type=run.nonnegative_int, default=2,
                     help='runs of a failed job after the first, before it is reported (default 2)')
    return p


if __name__ == '__main__':
    sys.exit(run_main(main))
