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
from harness.files import write_text_atomic
from harness.plots import plot_sweep_success
from harness.report import best_beta, per_seed_statistics, seed_task_matrix, stratified_iqm
from harness.tables import CSV, MARKDOWN, Cell, Column, Row, Table, count, csv_only, estimate, rate, text

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


def paper_text(entry: tuple[int, int | None] | None, missing: str = 'not in Table 1') -> str:
    """A PAPER_TABLE1 entry as the paper prints it: 'mean' or 'mean ± sd'; `missing` where it has none."""
    if entry is None:
        return missing
    mean, sd = entry
    return f'{mean}' if sd is None else f'{mean} ± {sd}'


def arm_table(arms: Sequence[Arm]) -> Table:
    """One row per arm and β (report.md's first table and report.csv); success columns are held-out,
    the selection column chose the β. A failed arm is a row of report.md only."""
    markdown = (MARKDOWN,)
    columns = (Column('task', 'task'), Column('env_id', 'env_id', formats=(CSV,)), Column('agent', 'agent'),
               Column('beta', 'β'), Column('selected', 'selected', formats=(CSV,)),
               Column('success_rate', 'held-out success'),
               Column('iqm', 'IQM over seeds [95 % CI]', csv=('iqm', 'iqm_ci95_low', 'iqm_ci95_high')),
               Column('seeds_x_episodes', 'seeds × episodes', formats=markdown),
               Column('selection_success_rate', 'selection success'),
               Column('seeds', 'seeds', csv=('seeds', 'episodes_per_seed'), formats=(CSV,)),
               Column('paper', 'paper', csv=('paper_table1_mean_pct', 'paper_table1_sd_pct'), formats=(CSV,)))
    rows = []
    for arm in arms:
        if not arm.results:
            failed = (text(arm.task), Cell(), text(arm.agent), text('—'), Cell(),
                      text(f'failed: {", ".join(arm.missing)}'), Cell(), Cell(), Cell(), Cell(), Cell())
            rows.append(Row(failed, formats=markdown))
            continue
        paper_mean, paper_sd = arm.paper or (None, None)
        for r in arm.results:
            selected = r['beta'] == arm.selected_beta
            mark = ' (selected)' if selected and len(arm.results) > 1 else ''
            beta = text('—' if AGENTS[arm.agent].BETA is None else f"{r['beta']:g}{mark}", f"{r['beta']:g}")
            design = (len(r['seeds']), r['episodes_per_seed'])
            rows.append(Row((text(arm.task), text(arm.env_id), text(arm.agent), beta, csv_only(int(selected)),
                             rate(r['success_rate']), estimate(r['iqm'], r['iqm_ci95']),
                             text('{} × {}'.format(*design)), rate(r.get('selection_success_rate')),
                             csv_only(*design), csv_only(paper_mean, paper_sd))))
    return Table(columns, tuple(rows))


def paper_table(arms: Sequence[Arm]) -> Table:
    """Per arm, ours at the selected β (in %) beside the paper's Table 1."""
    rows = []
    for arm in arms:
        chosen = arm.selected()
        if chosen is None:
            ours, beta = text('failed' if arm.missing else 'no β selected'), '—'
        else:
            ours = estimate(100 * chosen['iqm'], [100 * bound for bound in chosen['iqm_ci95']], digits=0)
            beta = '—' if AGENTS[arm.agent].BETA is None else f'{arm.selected_beta:g}'
        rows.append(Row((text(arm.task), text(arm.agent), ours, text(beta), text(paper_text(arm.paper)))))
    columns = (Column('task', 'task'), Column('agent', 'agent'), Column('ours', 'ours (%)'),
               Column('beta', 'selected β'), Column('paper', 'paper, Table 1 (%)'))
    return Table(columns, tuple(rows))


def report_markdown(arms: Sequence[Arm], header: str, pages: Sequence[tuple[str, str]] = ()) -> str:
    """`pages`: (what the job did, relative link) for each job folder whose index.html this machine can see."""
    lines = ['# Sweep report', '', header, '', '## Held-out success at each β', '',
             'IQM of the per-seed success with a stratified-bootstrap 95 % interval over seeds. The selected β '
             'is the one the selection episodes chose (their success is the last column); every other number '
             'comes from the held-out episodes. FQL acts with its one-step policy, without β.', '',
             arm_table(arms).markdown().rstrip('\n'),
             '', "## Beside the paper's Table 1", '',
             "Ours: held-out success at the selected β, in %, IQM over seeds [95 % CI]. The paper's (Table 1 of "
             'the QFQL paper, mean ± standard deviation over seeds) come from its own setting: 1M updates on the '
             'full datasets, QFQL at the β of its Table 2.', '',
             paper_table(arms).markdown().rstrip('\n')]
    lines += _across_tasks(arms)
    if pages:
        lines += ['', '## Run pages', '', 'Each job\'s own page (videos, plots, settings), where its folder is on this disk.',
                  '', *[f'- [{label}]({link})' for label, link in pages]]
    return '\n'.join(lines) + '\n'


def _across_tasks(arms: Sequence[Arm]) -> list[str]:
    """Per agent, with two tasks or more: the IQM over tasks × seeds at each arm's selected β, with a
    bootstrap stratified over tasks. An agent with a failed arm or unequal seed counts gets a row that
    says why it has no IQM (a stratified bootstrap needs the same seeds in every task)."""
    rows = []
    for agent in sorted({a.agent for a in arms}):
        own = [a for a in arms if a.agent == agent]
        if len(own) < 2:
            continue
        chosen = [a.selected() for a in own]
        counts = [len(c['seeds']) for c in chosen if c is not None]
        if any(c is None for c in chosen):
            lacking = ', '.join(a.task for a, c in zip(own, chosen) if c is None)
            cells = (text('—'), text(f'left out: no selected β for {lacking}'))
        elif len(set(counts)) != 1:
            per_task = ', '.join(f'{a.task} {n}' for a, n in zip(own, counts))
            cells = (text('—'), text(f'left out: unequal seed counts ({per_task})'))
        else:
            scores = seed_task_matrix([c['per_seed_success'] for c in chosen])
            cells = (count(scores.shape[0]), estimate(*stratified_iqm(scores), digits=2))
        rows.append(Row((text(agent), count(len(own)), *cells)))
    if not rows:
        return []
    columns = (Column('agent', 'agent'), Column('tasks', 'tasks'), Column('seeds', 'seeds per task'),
               Column('iqm', 'IQM [95 % CI]'))
    return ['', '## Across tasks', '', 'IQM of per-seed held-out success over tasks × seeds at each task\'s '
            'selected β, with a 95 % bootstrap interval stratified over tasks.', '',
            Table(columns, tuple(rows)).markdown().rstrip('\n')]


def write_report(out: Path, arms: Sequence[Arm], header: str, pages: Sequence[tuple[str, str]] = ()) -> list[Path]:
    """report.md, report.csv and success_vs_beta.png, each written atomically; returns their paths."""
    write_text_atomic(out / 'report.md', report_markdown(arms, header, pages))
    write_text_atomic(out / 'report.csv', arm_table(arms).csv())
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
