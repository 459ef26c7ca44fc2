"""The report of `python -m harness.sweep`: report.md, report.csv and success_vs_beta.png in its folder.

It is built from the summaries the jobs returned (nothing else is read), so it needs no shared
filesystem. An arm is one (task, agent) over all its seed groups: QFQL's results are its β sweeps'
(selection, then held-out episodes), FQL's its training run's own evaluation (it has no β). At each β
the report gives the held-out success and the IQM of the per-seed success with a stratified-bootstrap
95 % interval over seeds (`harness.report`); the selected β is the one the selection episodes chose.
Where a task is in the QFQL paper's Table 1, its numbers stand beside ours.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from agents import AGENTS
from harness.checkpoints import write_text_atomic
from harness.plots import plot_sweep_success
from harness.report import best_beta, iqm_with_interval, per_seed_statistics, seed_task_matrix

@dataclass(frozen=True)
class Arm:
    task: str                      # as given to --tasks
    env_id: str
    agent: str
    results: list[dict]            # one per β, over every seed group (see combine_seed_groups)
    selected_beta: float | None
    missing: tuple[str, ...] = ()  # jobs of this arm that returned nothing (failed)

    @property
    def paper(self) -> tuple[int, int | None] | None:
        """The QFQL paper's Table 1 entry ("Performance comparison on selected environments"): success in
        %, mean ± standard deviation over seeds (QFQL's without a deviation), from its own setting: 1M
        updates on the full datasets, with QFQL at the β of its Table 2."""
        return AGENTS[self.agent].PAPER_TABLE1.get(self.env_id)

    def selected(self) -> dict | None:
        return next((r for r in self.results if r['beta'] == self.selected_beta), None)


def combine_seed_groups(summaries: Sequence[dict]) -> list[dict]:
    """One result per β over the summaries of an arm's seed groups (jobs that trained different seeds).
    Success, IQM and interval are over all seeds; the selection rate is the seed-weighted mean of the
    groups' rates, exact because every seed has the same number of selection episodes."""
    by_beta = defaultdict(list)
    for summary in summaries:
        for result in summary['results']:
            by_beta[result['beta']].append(result)
    combined = []
    for beta, parts in sorted(by_beta.items()):
        per_seed = [x for part in parts for x in part['per_seed_success']]
        seeds = [s for part in parts for s in part['seeds']]
        result = {'beta': beta, 'success_rate': float(np.mean(per_seed)), **per_seed_statistics(per_seed),
                  'seeds': seeds, 'episodes_per_seed': min(part['episodes_per_seed'] for part in parts)}
        if all('selection_success_rate' in part for part in parts):
            result['selection_success_rate'] = float(
                sum(part['selection_success_rate'] * len(part['seeds']) for part in parts) / len(seeds))
        combined.append(result)
    return combined


def build_arms(jobs: Sequence, records: dict[str, dict]) -> list[Arm]:
    """Arms from the sweep's jobs and the records of those that finished (job name -> record)."""
    reported = defaultdict(list)               # (task, agent) -> the jobs whose summaries report the arm
    for job in jobs:
        if job.kind == ('train' if AGENTS[job.agent].BETA is None else 'betas'):
            reported[job.task, job.agent].append(job)
    arms = []
    for (task, agent), arm_jobs in reported.items():
        summaries = [records[j.name]['summary'] for j in arm_jobs if j.name in records]
        missing = tuple(j.name for j in arm_jobs if j.name not in records)
        results = combine_seed_groups(summaries) if summaries else []
        env_id = summaries[0]['env_id'] if summaries else task
        arms.append(Arm(task, env_id, agent, results, best_beta(results) if results else None, missing))
    return sorted(arms, key=lambda a: (a.task, list(AGENTS).index(a.agent)))


def _paper_text(arm: Arm) -> str:
    if arm.paper is None:
        return 'not in Table 1'
    mean, sd = arm.paper
    return f'{mean}' if sd is None else f'{mean} ± {sd}'


def report_markdown(arms: Sequence[Arm], header: str, pages: Sequence[tuple[str, str]] = ()) -> str:
    """`pages`: (what the job did, relative link) for each job folder whose index.html this machine can see."""
    lines = ['# Sweep report', '', header, '', '## Held-out success at each β', '',
             'IQM of the per-seed success with a stratified-bootstrap 95 % interval over seeds. The selected β '
             'is the one the selection episodes chose (their success is the last column); every other number '
             'comes from the held-out episodes. FQL acts with its one-step policy, without β.', '',
             '| task | agent | β | held-out success | IQM over seeds [95 % CI] | seeds × episodes '
             '| selection success |',
             '|---|---|---|---|---|---|---|']
    for arm in arms:
        if not arm.results:
            lines.append(f'| {arm.task} | {arm.agent} | — | failed: {", ".join(arm.missing)} | | | |')
            continue
        for r in arm.results:
            beta = '—' if AGENTS[arm.agent].BETA is None else f"{r['beta']:g}" + (
                ' (selected)' if r['beta'] == arm.selected_beta and len(arm.results) > 1 else '')
            selection = f"{r['selection_success_rate']:.3f}" if 'selection_success_rate' in r else '—'
            lines.append(f"| {arm.task} | {arm.agent} | {beta} | {r['success_rate']:.3f} | {r['iqm']:.3f} "
                         f"[{r['iqm_ci95'][0]:.3f}, {r['iqm_ci95'][1]:.3f}] | {len(r['seeds'])} × "
                         f"{r['episodes_per_seed']} | {selection} |")
    lines += ['', "## Beside the paper's Table 1", '',
              "Ours: held-out success at the selected β, in %, IQM over seeds [95 % CI]. The paper's (Table 1 of "
              'the QFQL paper, mean ± standard deviation over seeds) come from its own setting: 1M updates on the '
              'full datasets, QFQL at the β of its Table 2.', '',
              '| task | agent | ours (%) | selected β | paper, Table 1 (%) |', '|---|---|---|---|---|']
    for arm in arms:
        chosen = arm.selected()
        if chosen is None:
            ours, beta = 'failed' if arm.missing else 'no β selected', '—'
        else:
            low, high = chosen['iqm_ci95']
            ours = f"{100 * chosen['iqm']:.0f} [{100 * low:.0f}, {100 * high:.0f}]"
            beta = '—' if AGENTS[arm.agent].BETA is None else f'{arm.selected_beta:g}'
        lines.append(f'| {arm.task} | {arm.agent} | {ours} | {beta} | {_paper_text(arm)} |')
    lines += _across_tasks(arms)
    if pages:
        lines += ['', '## Run pages', '', 'Each job\'s own page (videos, plots, settings), where its folder is on this disk.',
                  '', *[f'- [{label}]({link})' for label, link in pages]]
    return '\n'.join(lines) + '\n'


def _across_tasks(arms: Sequence[Arm]) -> list[str]:
    """Per agent, with two tasks or more: the IQM over tasks × seeds at each arm's selected β, with a
    bootstrap stratified over tasks. An agent with a failed arm or unequal seed counts gets a row that
    says why it has no IQM (a stratified bootstrap needs the same seeds in every task)."""
    lines = []
    for agent in sorted({a.agent for a in arms}):
        own = [a for a in arms if a.agent == agent]
        if len(own) < 2:
            continue
        chosen = [a.selected() for a in own]
        if any(c is None for c in chosen):
            lacking = ', '.join(a.task for a, c in zip(own, chosen) if c is None)
            lines.append(f'| {agent} | {len(own)} | — | left out: no selected β for {lacking} |')
            continue
        counts = [len(c['seeds']) for c in chosen]
        if len(set(counts)) != 1:
            per_task = ', '.join(f'{a.task} {n}' for a, n in zip(own, counts))
            lines.append(f'| {agent} | {len(own)} | — | left out: unequal seed counts ({per_task}) |')
            continue
        scores = seed_task_matrix([c['per_seed_success'] for c in chosen])
        lines.append(f'| {agent} | {len(own)} | {scores.shape[0]} | {iqm_with_interval(scores)} |')
    if not lines:
        return []
    return ['', '## Across tasks', '', 'IQM of per-seed held-out success over tasks × seeds at each task\'s '
            'selected β, with a 95 % bootstrap interval stratified over tasks.', '',
            '| agent | tasks | seeds per task | IQM [95 % CI] |', '|---|---|---|---|', *lines]


def report_csv(arms: Sequence[Arm]) -> str:
    """One row per arm and β; success columns are held-out, selection_success_rate chose the β."""
    rows = ['task,env_id,agent,beta,selected,success_rate,iqm,iqm_ci95_low,iqm_ci95_high,selection_success_rate,'
            'seeds,episodes_per_seed,paper_table1_mean_pct,paper_table1_sd_pct']
    for arm in arms:
        paper_mean, paper_sd = arm.paper or ('', '')
        for r in arm.results:
            selection = f"{r['selection_success_rate']:.6f}" if 'selection_success_rate' in r else ''
            rows.append(f"{arm.task},{arm.env_id},{arm.agent},{r['beta']:g},{int(r['beta'] == arm.selected_beta)},"
                        f"{r['success_rate']:.6f},{r['iqm']:.6f},{r['iqm_ci95'][0]:.6f},{r['iqm_ci95'][1]:.6f},"
                        f"{selection},{len(r['seeds'])},{r['episodes_per_seed']},{paper_mean},"
                        f"{'' if paper_sd is None else paper_sd}")
    return '\n'.join(rows) + '\n'


def write_report(out: Path, arms: Sequence[Arm], header: str, pages: Sequence[tuple[str, str]] = ()) -> list[Path]:
    """report.md, report.csv and success_vs_beta.png, each written atomically; returns their paths."""
    write_text_atomic(out / 'report.md', report_markdown(arms, header, pages))
    write_text_atomic(out / 'report.csv', report_csv(arms))
    paths = [out / 'report.md', out / 'report.csv']
    panels = defaultdict(list)
    for arm in arms:
        if arm.results:
            panels[arm.task].append({'agent': arm.agent, 'results': arm.results, 'selected_beta': arm.selected_beta,
                                     'paper': None if arm.paper is None else arm.paper[0]})
    if panels:
        paths.append(plot_sweep_success(dict(panels), out / 'success_vs_beta.png',
                                        'held-out success against β (IQM over seeds, 95 % interval)'))
    return paths
