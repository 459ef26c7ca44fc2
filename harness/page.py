"""index.html of a run or sweep folder, and of a folder of runs: a page to watch what β does.

A run's page shows the task, agent, dataset card and resolved settings; the success table per β
with its intervals (held-out and selection columns labelled, the selected β marked, the max over β
labelled optimistic); the plots; every recorded video labelled with its episode record from
eval.jsonl; and β = 0 beside a guided β from the same start state, both started by one click.

The page must open anywhere a run folder is copied to, from file:// and offline: links are relative,
the CSS and the one small script are inline, nothing is fetched, and every text is html-escaped.
It is rewritten whole (`write_text_atomic`), so a reader never sees half a page.

Codec: the videos stay the H.264 (High profile, yuv420p) mp4 that harness/video.py writes, with no
WebM/VP9 copy. Debian's `chromium` package plays them (checked with Chromium 156 on Debian 12:
readyState 4, frames decoded, from file:// and over harness.view), so a second encoding would add
to the rendering time and disk of every run for no browser we know to need it.
tests/test_harness_page.py opens the pages in Debian's Chromium and fails if a video stops playing.
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import quote

from envs.dataset_spec import card_path, dataset_paths
from harness.defaults import CARD_FILE
from harness.files import write_text_atomic
from harness.outputs import read_jsonl
from harness.report import best_beta, beta_table, max_over_betas

PAGE = 'index.html'
# The held-out phases: summary.json's rates and every video come from their episodes.
REPORTED_PHASES = ('final', 'sweep')
LISTING_DEPTH = 3       # artifacts/runs/<run>/ is two levels below artifacts/; deeper folders are not runs

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.selected { background: #eaf6ea; } .note { color: #555; } .optimistic { color: #8a5a00; }
.videos { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
figure.video video { width: 320px; background: #000; } figcaption { font-size: 12px; max-width: 320px; }
.pair .videos figure.video video { width: 420px; } .pair figcaption { max-width: 420px; }
img.plot { max-width: 100%; border: 1px solid #ddd; } pre { background: #f7f7f7; padding: .6em; overflow: auto; }
button { font-size: 14px; margin: .4em 0; }
"""

# Restart both videos of a pair together, so that their frames show the same env steps.
PAIR_SCRIPT = """
document.querySelectorAll('button[data-play-pair]').forEach(function (button) {
  button.addEventListener('click', function () {
    var videos = button.closest('.pair').querySelectorAll('video');
    videos.forEach(function (video) { video.pause(); video.currentTime = 0; });
    videos.forEach(function (video) { video.play(); });
  });
});
"""


# ---- small formatting helpers ------------------------------------------------------------------------
def esc(value) -> str:
    return html.escape(str(value), quote=True)


def link(path: str) -> str:
    """A relative URL to a file of the folder, safe in an attribute (names may hold any character)."""
    return esc(quote(path))


def rate(value) -> str:
    return '—' if value is None else f'{value:.3f}'


def interval(ci) -> str:
    return '—' if ci is None else f'[{ci[0]:.3f}, {ci[1]:.3f}]'


def number(value, digits: int = 3) -> str:
    return '—' if value is None or not math.isfinite(value) else f'{value:.{digits}g}'


def definition_table(rows: Iterable[tuple[str, object]]) -> str:
    body = ''.join(f'<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>' for key, value in rows)
    return f'<table>{body}</table>'


def video_name(row: dict) -> str:
    """The file harness/scoring.py writes for a recorded episode (same formatting of β)."""
    return f"videos/beta{row['beta']:g}-seed{row['seed']}-ep{row['episode']}.mp4"


# ---- which β is shown beside β = 0 -------------------------------------------------------------------------
def guided_beta(summary: dict) -> tuple[float, str] | None:
    """(β, why) to play beside β = 0: the selected β; when the selection chose 0, or none was made,
    the β > 0 that the same rule ranks first (the label says which). None without β = 0 or a β > 0."""
    results = summary['results']
    guided = [r for r in results if r['beta'] > 0]
    if not guided or all(r['beta'] != 0 for r in results):
        return None
    chosen = summary.get('best_beta')
    if chosen:
        return chosen, 'the β chosen on the selection episodes'
    note = ' (the selection chose β = 0)' if chosen == 0 else ''
    if len(guided) == 1:
        return guided[0]['beta'], 'the only β > 0 evaluated' + note
    ranked = best_beta(guided)
    if ranked is not None:
        return ranked, 'the best β > 0 on the selection episodes' + note
    return max_over_betas(guided)['beta'], 'the β > 0 with the highest held-out success (optimistic: no selection)'


# ---- the run page -------------------------------------------------------------------------------------------
def render_page(summary: dict, config: dict, episodes: Sequence[dict], files: Sequence[str], dataset: dict) -> str:
    """The page of a run or sweep folder, from its summary.json, config.json, eval.jsonl rows, its
    files (paths relative to the folder) and its dataset card."""
    present = set(files)
    videos = {video_name(row): row for row in episodes if row['phase'] in REPORTED_PHASES}
    videos = {name: row for name, row in videos.items() if name in present}
    pairs = _pairs(summary, videos)
    paired = {name for _, names in (pairs[2] if pairs else []) for name in names}
    kind = 'β sweep' if summary['mode'] == 'evaluate' else 'training run'
    title = f"{summary['task']} · {summary['agent']} · {kind}"
    sections = [
        f'<h1>{esc(title)}</h1><p class="note">{esc(summary["env_id"])}, preset {esc(summary["preset"])}, '
        f'{esc(summary["steps"])} updates, seeds {esc(", ".join(map(str, summary["seeds"])))}</p>',
        _headline(summary),
        _success_table(summary),
        _side_by_side(pairs, videos),
        _videos_per_beta(summary, videos, paired),
        _plots(files),
        '<h2>Dataset</h2>' + definition_table(dataset.items()),
        _settings(summary, config),
        _files(files),
    ]
    return _document(title, ''.join(sections), script=PAIR_SCRIPT)


def _document(title: str, body: str, script: str = '') -> str:
    script_tag = f'<script>{script}</script>' if script else ''
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<style>{STYLE}</style></head><body>{body}{script_tag}</body></html>\n')


def _headline(summary: dict) -> str:
    by_beta = {r['beta']: r for r in summary['results']}
    chosen = summary.get('best_beta')
    items = [f'<li><b>acting</b>: {esc(summary["acting"])}</li>']
    if 0.0 in by_beta:
        r = by_beta[0.0]
        items.append(f'<li><b>β = 0</b> (no guidance): held-out success {rate(r["success_rate"])} '
                     f'{interval(r["ci95"])}</li>')
    if chosen is None:
        items.append('<li><b>best β</b>: none chosen (several βs and no selection episodes)</li>')
    else:
        r = by_beta[chosen]
        items.append(f'<li><b>best β = {chosen:g}</b>, held-out success {rate(r["success_rate"])} '
                     f'{interval(r["ci95"])}; chosen by: {esc(summary["best_beta_selection"])}</li>')
    if len(by_beta) > 1:
        top = summary['max_over_betas']
        items.append(f'<li class="optimistic"><b>max over β</b> (optimistic: chosen on the very held-out episodes '
                     f'it reports): {rate(top["success_rate"])} {interval(top["ci95"])} at β = {top["beta"]:g}</li>')
    return f'<ul>{"".join(items)}</ul>'


def _success_table(summary: dict) -> str:
    episodes = f"{len(summary['seeds'])} seed(s) × {summary['eval_episodes_per_seed']} held-out episodes per β"
    return (f'<h2>Success per β</h2><p class="note">{esc(episodes)}; {esc(summary["interval_method"])}. '
            'Held-out columns are what every reported rate is; selection columns are what chose β.</p>'
            + beta_table(summary['results'], summary.get('selection_only', ())).html('success'))


def _video_figure(name: str, row: dict) -> str:
    outcome = 'success' if row['success'] else 'failure'
    label = (f"β = {row['beta']:g} · seed {row['seed']} · episode {row['episode']} · env seed {row['env_seed']} · "
             f"{outcome} · return {row['return']:.1f} · length {row['length']} · "
             f"mean ‖β∇Q‖ {number(row.get('mean_guidance_norm', math.nan))}")
    return (f'<figure class="video"><video controls loop muted playsinline preload="auto">'
            f'<source src="{link(name)}" type="video/mp4"><a href="{link(name)}">{esc(name)}</a></video>'
            f'<figcaption>{esc(label)}</figcaption></figure>')


def _pairs(summary: dict, videos: dict[str, dict]) -> tuple[float, str, list[tuple[tuple, list[str]]]] | None:
    """(guided β, why it was picked, [(seed and episode, [video at β = 0, video at β])]) for every start
    state recorded at both βs; None without a β = 0 and a guided β to compare."""
    pick = guided_beta(summary)
    if pick is None:
        return None
    beta, why = pick
    at = {b: {(row['seed'], row['episode']): name for name, row in videos.items() if row['beta'] == b}
          for b in (0.0, beta)}
    starts = sorted(set(at[0.0]) & set(at[beta]))
    return beta, why, [(start, [at[0.0][start], at[beta][start]]) for start in starts]


def _side_by_side(pairs, videos: dict[str, dict]) -> str:
    heading = '<h2>β = 0 beside guidance, same start state</h2>'
    if pairs is None:
        return heading + ('<p class="note">Needs β = 0 and a β &gt; 0 among the evaluated βs, e.g. '
                          '<code>--betas 0,0.3</code> or a β sweep of this checkpoint.</p>')
    beta, why, starts = pairs
    if not starts:
        return heading + f'<p class="note">No episode was recorded at both β = 0 and β = {beta:g}.</p>'
    blocks = []
    for index, (start, names) in enumerate(starts):
        figures = ''.join(_video_figure(name, videos[name]) for name in names)
        blocks.append(f'<div class="pair" data-pair="{index}"><button type="button" data-play-pair>'
                      f'▶ play both from the start (seed {start[0]}, episode {start[1]})</button>'
                      f'<div class="videos">{figures}</div></div>')
    return heading + f'<p class="note">β = {beta:g}: {esc(why)}. The strip under each video plots ‖β∇Q‖ and ‖v‖ per env step.</p>' + ''.join(blocks)


def _videos_per_beta(summary: dict, videos: dict[str, dict], paired: set[str]) -> str:
    """Every recorded video not already shown in a pair above (a page loads each video once)."""
    parts = ['<h2>Videos per β</h2>']
    for r in summary['results']:
        recorded = [name for name, row in videos.items() if row['beta'] == r['beta']]
        names = sorted((name for name in recorded if name not in paired),
                       key=lambda name: (videos[name]['seed'], videos[name]['episode']))
        figures = ''.join(_video_figure(name, videos[name]) for name in names)
        if names:
            body = f'<div class="videos">{figures}</div>'
        elif recorded:
            body = '<p class="note">Its recorded episodes are in the pairs above.</p>'
        else:
            body = '<p class="note">No video recorded (--video-episodes 0).</p>'
        parts.append(f'<h3>β = {r["beta"]:g} (held-out success {rate(r["success_rate"])})</h3>' + body)
    return ''.join(parts)


def _plots(files: Sequence[str]) -> str:
    plots = [f for f in files if f.startswith('plots/') and f.endswith('.png')]
    figures = ''.join(f'<figure><img class="plot" src="{link(f)}" alt="{esc(f)}"><figcaption>{esc(f)}</figcaption>'
                      '</figure>' for f in plots)
    return '<h2>Plots</h2>' + (figures or '<p class="note">No plots.</p>')


def _settings(summary: dict, config: dict) -> str:
    rows = [('task', f"{summary['task']} ({summary['env_id']})"), ('agent', summary['agent']),
            ('preset', summary['preset']), ('mode', summary['mode']), ('updates', summary['steps']),
            ('seeds', summary['seeds']), ('run β', summary['beta']), ('sampler', json.dumps(summary['sampler'])),
            ('success timing', summary['success_timing']), ('reward labels', summary['reward']),
            ('checkpoint', summary['checkpoint'] or '—'), ('command', config.get('command', '—')),
            ('divergence warnings', json.dumps(summary.get('divergence_warnings', {}))),
            ('time (s)', json.dumps(summary['timing_s']))]
    return ('<h2>Settings</h2>' + definition_table(rows) +
            '<details><summary>every resolved setting (config.json)</summary>'
            f'<pre>{esc(json.dumps(config, indent=2, ensure_ascii=False))}</pre></details>')


def _files(files: Sequence[str]) -> str:
    top = [f for f in files if '/' not in f and f != PAGE]
    items = ''.join(f'<li><a href="{link(f)}">{esc(f)}</a></li>' for f in top)
    return f'<h2>Files</h2><ul>{items}</ul>'


# ---- reading a folder and writing its page -----------------------------------------------------------------------
def dataset_card(dataset_name: str, data_dir: str) -> dict:
    """The dataset a run trained on, from the data card `envs.generate` wrote beside it."""
    path = Path(card_path(dataset_paths(dataset_name, data_dir)[0]))
    if not path.is_file():
        return {'name': dataset_name, 'card': 'missing (downloaded or moved)'}
    card = json.loads(path.read_text())
    return {'name': dataset_name, 'episodes': card['episodes'], 'transitions': card['transitions'],
            'generator_seed': card['seed'], 'generator': card['generator'],
            'regenerate': f"python -m envs.generate {dataset_name} --episodes {card['episodes']} --seed {card['seed']}"}


def training_dataset(config: dict) -> dict:
    """The dataset card of the data the agent learned from: a sweep's comes from the checkpoint it
    evaluated (a shipped card, or the training run's config.json), whose data_dir may differ."""
    dataset_name, data_dir = config['task']['dataset_name'], config['data_dir']
    checkpoint = Path(config['checkpoint']) if config.get('checkpoint') else None
    if config['mode'] == 'evaluate' and checkpoint is not None:
        if (checkpoint / CARD_FILE).is_file():
            return json.loads((checkpoint / CARD_FILE).read_text())['dataset']
        trained = checkpoint.parent.parent / 'config.json'
        if trained.is_file():
            data_dir = json.loads(trained.read_text())['data_dir']
    return dataset_card(dataset_name, data_dir)


def folder_files(folder: Path) -> list[str]:
    """What a page may link to: the folder's own files, its plots and its videos (not checkpoints)."""
    files = [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith('.')]
    files += [f'{sub}/{p.name}' for sub, pattern in (('plots', '*.png'), ('videos', '*.mp4'))
              for p in (folder / sub).glob(pattern)]
    return sorted(files)


def write_page(folder: Path) -> Path:
    """(Re)write folder/index.html from the folder's summary.json, config.json and eval.jsonl."""
    folder = Path(folder)
    summary = json.loads((folder / 'summary.json').read_text())
    config = json.loads((folder / 'config.json').read_text())
    text = render_page(summary, config, read_jsonl(folder / 'eval.jsonl'), folder_files(folder),
                       training_dataset(config))
    write_text_atomic(folder / PAGE, text)
    return folder / PAGE


# ---- a folder of runs ------------------------------------------------------------------------------------------
def run_folders(root: Path) -> tuple[list[Path], list[Path]]:
    """(folders with a page, finished folders without one) up to LISTING_DEPTH below `root`; a run
    folder's own sub-folders are not searched."""
    root = Path(root)
    with_page, without = [], []
    for path, dirs, names in os.walk(root):
        depth = len(Path(path).relative_to(root).parts)
        if depth and 'summary.json' in names:
            (with_page if PAGE in names else without).append(Path(path))
            dirs[:] = []
        elif depth >= LISTING_DEPTH:
            dirs[:] = []
        dirs.sort()
    return with_page, without


def render_listing(root_name: str, rows: Sequence[tuple[str, dict]]) -> str:
    """A table of runs: (relative path of a run's page, its summary.json) -> headline numbers."""
    body = []
    for href, summary in rows:
        by_beta = {r['beta']: r for r in summary['results']}
        chosen = summary.get('best_beta')
        at_zero = by_beta.get(0.0, {}).get('success_rate')
        at_best = None if chosen is None else by_beta[chosen]['success_rate']
        cells = [f'<td><a href="{link(href)}">{esc(str(Path(href).parent))}</a></td>',
                 f'<td>{"β sweep" if summary["mode"] == "evaluate" else "training run"}</td>',
                 f'<td>{esc(summary["task"])}</td>', f'<td>{esc(summary["agent"])}</td>',
                 f'<td class="num">{esc(summary["steps"])}</td>',
                 f'<td class="num">{"—" if chosen is None else f"{chosen:g}"}</td>',
                 f'<td class="num">{rate(at_zero)}</td>', f'<td class="num">{rate(at_best)}</td>']
        body.append(f'<tr>{"".join(cells)}</tr>')
    head = ''.join(f'<th>{esc(h)}</th>' for h in ('folder', 'kind', 'task', 'agent', 'updates', 'best β (selected)',
                                             'held-out success at β = 0', 'held-out success at best β'))
    title = f'runs under {root_name}'
    return _document(title, f'<h1>{esc(title)}</h1><table><tr>{head}</tr>{"".join(body)}</table>')


def write_listing(root: Path, folders: Sequence[Path]) -> Path:
    """(Re)write root/index.html listing the run and sweep folders given (each has a page)."""
    root = Path(root)
    rows = [(f'{folder.relative_to(root).as_posix()}/{PAGE}', json.loads((folder / 'summary.json').read_text()))
            for folder in folders]
    write_text_atomic(root / PAGE, render_listing(root.resolve().name, rows))
    return root / PAGE
