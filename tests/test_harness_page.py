"""The page of a run and of a β sweep (harness/page.py) and its server (harness/view.py), on one tiny
pointmaze run: every link resolves inside the folder, the table is summary.json's, each video is
labelled with its episode record, `python -m harness.view` serves and stops on Ctrl-C, and Debian's
Chromium plays every video from file:// and over the server."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from harness.errors import run_main
from harness.page import PAGE
from harness.run import main as run_harness
from harness.view import main as view_main, make_server
from tests.cli import run_cli
from tests.test_harness_end_to_end import data_dir  # noqa: F401 (the module-scoped dataset fixture)

TINY_EVAL = ['--eval-episodes', '1', '--eval-envs', '1', '--video-episodes', '1', '--frame-skip', '100']
VOID = {'meta', 'img', 'source', 'br', 'hr', 'input', 'link'}


@pytest.fixture(scope='module')
def folders(data_dir, tmp_path_factory):  # noqa: F811 (pytest passes the imported fixture)
    """(root, run, sweep): a 100-update training run at β = 0.3 and a β = 0, 1 sweep of its checkpoint,
    laid out as under artifacts/, each with one recorded episode per β."""
    root = tmp_path_factory.mktemp('artifacts')
    run, sweep = root / 'runs' / 'tiny', root / 'sweeps' / 'tiny-betas-0_1'
    assert run_main(run_harness, ['--task', 'pointmaze', '--preset', 'tiny', '--steps', '100', '--updates-per-call',
                                  '100', *TINY_EVAL, '--data-dir', data_dir, '--out', str(run)]) == 0
    assert run_main(run_harness, ['--checkpoint', str(run), '--betas', '0,1', '--selection-episodes', '1', *TINY_EVAL,
                                  '--out', str(sweep)]) == 0
    return root, run, sweep


class Page(HTMLParser):
    """A page's links, table cells, video captions and pairs, and whether its tags nest properly."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.open, self.unbalanced = [], []
        self.links, self.cells, self.captions, self.pairs = [], {}, {}, []
        self.beta = self.cell = self.source = self.caption = self.pair_depth = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in VOID:
            self.open.append(tag)
        self.links += [attrs[key] for key in ('src', 'href') if key in attrs]
        if tag == 'tr':
            self.beta = json.loads(attrs['data-beta']) if 'data-beta' in attrs else None
        if tag == 'td' and 'data-field' in attrs:
            self.cell = (self.beta, attrs['data-field'])
            self.cells[self.cell] = [attrs.get('data-value'), '']
        if tag == 'div' and 'data-pair' in attrs:
            self.pairs.append([])
            self.pair_depth = len(self.open)
        if tag == 'source':
            self.source = unquote(attrs['src'])
            if self.pair_depth is not None:
                self.pairs[-1].append(self.source)
        if tag == 'figcaption' and self.source:
            self.caption = self.source
            self.captions[self.caption] = ''

    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.unbalanced.append(tag)
        if tag == 'td':
            self.cell = None
        if tag == 'figcaption':
            self.caption = self.source = None
        if self.pair_depth is not None and len(self.open) < self.pair_depth:
            self.pair_depth = None

    def handle_data(self, data):
        if self.cell:
            self.cells[self.cell][1] += data
        if self.caption:
            self.captions[self.caption] += data


def read_page(folder: Path) -> Page:
    page = Page((folder / PAGE).read_text())
    assert not page.unbalanced and not page.open, f'{folder / PAGE}: tags do not nest ({page.unbalanced}, {page.open})'
    return page


@pytest.mark.slow
def test_pages_link_inside_the_folder_and_show_the_summary(folders):
    _, run, sweep = folders
    for folder in (run, sweep):
        page, text = read_page(folder), (folder / PAGE).read_text()
        summary = json.loads((folder / 'summary.json').read_text())
        assert '<script src' not in text and '<link' not in text
        for href in page.links:
            assert not urlsplit(href).scheme and not href.startswith('/'), f'{href} is not relative'
            assert (folder / unquote(href)).is_file(), f'{folder / PAGE} links to missing {href}'
        assert set(summary['videos']) <= {unquote(h) for h in page.links}
        for name in summary['videos']:   # once each: the pair's videos are not repeated per β
            assert text.count(f'<source src="{name}"') == 1, name
        assert set(summary['plots']) <= {unquote(h) for h in page.links}
        for r in summary['results']:
            value, shown = page.cells[(r['beta'], 'success_rate')]
            assert json.loads(value) == r['success_rate'] and shown == f"{r['success_rate']:.3f}"
            if 'selection_success_rate' in r:
                value, shown = page.cells[(r['beta'], 'selection_success_rate')]
                assert json.loads(value) == r['selection_success_rate']
        # Each video's caption is its episode record from eval.jsonl (held-out phase).
        rows = [json.loads(line) for line in (folder / 'eval.jsonl').read_text().splitlines()]
        for name in summary['videos']:
            row = next(r for r in rows if r['phase'] in ('final', 'sweep') and
                       name == f"videos/beta{r['beta']:g}-seed{r['seed']}-ep{r['episode']}.mp4")
            caption = page.captions[name]
            for piece in (f"seed {row['seed']}", f"episode {row['episode']}", f"env seed {row['env_seed']}",
                          f"return {row['return']:.1f}", f"length {row['length']}",
                          f"mean ‖β∇Q‖ {row['mean_guidance_norm']:.3g}", 'success' if row['success'] else 'failure'):
                assert piece in caption, f'{piece!r} not in the caption of {name}: {caption!r}'
    # The sweep chose β = 0 on its selection episode (nothing succeeds this early), so its pair plays β = 0
    # beside the only guided β, from the same start; the training run has no β = 0 to compare with.
    assert read_page(sweep).pairs == [['videos/beta0-seed0-ep0.mp4', 'videos/beta1-seed0-ep0.mp4']]
    assert 'the only β &gt; 0 evaluated (the selection chose β = 0)' in (sweep / PAGE).read_text()
    assert read_page(run).pairs == []
    assert 'max over β' not in (run / PAGE).read_text() and 'max over β' in (sweep / PAGE).read_text()


@pytest.mark.slow
def test_view_rewrites_lists_serves_and_refuses_bad_paths(folders, tmp_path, capsys):
    root, run, sweep = folders
    written = (run / PAGE).read_text()
    (run / PAGE).unlink()
    assert run_main(view_main, [str(run), '--no-serve']) == 0
    assert (run / PAGE).read_text() == written, 'an older run gets the page a new run writes'

    assert run_main(view_main, [str(root), '--no-serve']) == 0
    listing = read_page(root)
    assert sorted(listing.links) == ['runs/tiny/index.html', 'sweeps/tiny-betas-0_1/index.html']
    assert not list(root.glob('.*tmp*')) and not list(run.glob('.*tmp*')), 'pages are written by rename'

    unfinished = tmp_path / 'unfinished'
    unfinished.mkdir()
    (unfinished / 'config.json').write_text('{}')
    (tmp_path / 'empty').mkdir()
    for path, says in ((tmp_path / 'missing', 'does not exist'), (run / 'summary.json', 'is not a folder'),
                       (unfinished, 'no summary.json yet'), (tmp_path / 'empty', 'no run or sweep folder')):
        status, err = run_cli(view_main, [str(path), '--no-serve'], capsys)
        assert status == 2 and err.startswith('error: ') and says in err and err.count('\n') == 1, err

    # The command itself: it prints the URL, serves the folder's files, and Ctrl-C ends it with status 0.
    proc = subprocess.Popen([sys.executable, '-m', 'harness.view', str(root), '--port', '0'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        line = proc.stdout.readline()
        url = line.split(' at ')[1].split()[0]
        assert url.startswith('http://127.0.0.1:') and url.endswith('/index.html'), line
        with urllib.request.urlopen(url.replace('index.html', 'sweeps/tiny-betas-0_1/videos/beta1-seed0-ep0.mp4')) as got:
            assert got.read() == (sweep / 'videos' / 'beta1-seed0-ep0.mp4').read_bytes()
        port = int(url.split(':')[2].split('/')[0])
        status, err = run_cli(view_main, [str(run), '--port', str(port)], capsys)
        assert status == 2 and f'port {port} is in use' in err
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and 'Traceback' not in err and 'stopped' in out


SUMMARY = {'mode': 'train', 'task': 'pointmaze', 'agent': 'qfql', 'steps': 100, 'best_beta': 0.0,
           'results': [{'beta': 0.0, 'success_rate': 0.5}]}


def _fake_run(folder: Path, summary: str = json.dumps(SUMMARY)) -> Path:
    """A finished run folder as harness.view sees it (summary, config, page), without training one."""
    folder.mkdir(parents=True)
    (folder / 'summary.json').write_text(summary)
    (folder / 'config.json').write_text(json.dumps({'mode': 'train', 'command': 'python -m harness.run --task pointmaze'}))
    (folder / PAGE).write_text('<html>the page</html>')
    return folder


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as got:
            return got.status
    except urllib.error.HTTPError as error:
        return error.code


def test_view_serves_no_symlink_out_of_the_folder_and_no_listing(tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'secret.txt').write_text('not for the network')
    run = _fake_run(tmp_path / 'run')
    (run / 'plots').mkdir()
    (run / 'plots' / 'a.png').write_bytes(b'png')
    (run / 'leak.txt').symlink_to(outside / 'secret.txt')
    (run / 'outdir').symlink_to(outside, target_is_directory=True)
    (run / 'linked.png').symlink_to(run / 'plots' / 'a.png')
    proc = subprocess.Popen([sys.executable, '-m', 'harness.view', str(run), '--port', '0'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        base = proc.stdout.readline().split(' at ')[1].split()[0].removesuffix(PAGE)
        assert base.startswith('http://127.0.0.1:'), base
        assert _status(base + PAGE) == _status(base + 'plots/a.png') == _status(base + 'linked.png') == 200
        for refused in ('leak.txt', 'outdir/secret.txt', 'outdir/', 'outdir', 'plots/', 'plots'):
            assert _status(base + refused) == 404, refused
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and 'Traceback' not in err


def test_view_refuses_bad_ports_and_names_a_damaged_summary(tmp_path, capsys):
    run = _fake_run(tmp_path / 'runs' / 'good')
    for port in ('-1', '70000', 'eighty'):
        status, err = run_cli(view_main, [str(run), '--port', port], capsys)
        assert status == 2 and err.startswith('error: ') and 'port' in err and err.count('\n') == 1, err

    cut = _fake_run(tmp_path / 'runs' / 'cut', summary=json.dumps(SUMMARY)[:40])
    (cut / PAGE).unlink()
    status, err = run_cli(view_main, [str(cut), '--no-serve'], capsys)
    assert status == 2 and err.count('\n') == 1, err
    assert f'{cut}/summary.json is damaged' in err and f'python -m harness.run --resume {cut}' in err
    # In a listing, a damaged folder is left out with a note and the others are listed.
    (cut / PAGE).write_text('<html>its page from before</html>')
    assert run_main(view_main, [str(tmp_path), '--no-serve']) == 0
    assert read_page(tmp_path).links == ['runs/good/index.html']
    assert 'not listed because their summary.json is damaged' in capsys.readouterr().out


def _browser_or_skip():
    """Debian's Chromium driven by Playwright; missing either skips here and fails in CI (CI=true)."""
    missing = []
    executable = shutil.which('chromium')
    if executable is None:
        missing.append("Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        reason = f"the browser test needs {' and '.join(missing)}"
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail(reason + ' (CI=true: not skipped)')
        pytest.skip(reason)
    return sync_playwright, executable


VIDEOS_READY = '() => [...document.querySelectorAll("video")].every(v => v.readyState >= 2)'
VIDEO_STATE = '() => [...document.querySelectorAll("video")].map(v => [v.readyState, v.duration, v.videoWidth])'


@pytest.mark.slow
def test_chromium_plays_every_video_and_the_pair_together(folders, tmp_path):
    sync_playwright, executable = _browser_or_skip()
    root, run, sweep = folders
    server = make_server(root, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable)
            page = browser.new_page(viewport={'width': 1280, 'height': 900})
            for folder in (run, sweep):
                page.goto((folder / PAGE).as_uri())
                page.wait_for_function(VIDEOS_READY, timeout=30_000)
                states = page.evaluate(VIDEO_STATE)
                summary = json.loads((folder / 'summary.json').read_text())
                assert len(states) == len(summary['videos'])   # each video once, the pair's included
                assert all(ready >= 2 and duration > 0 and width > 0 for ready, duration, width in states), states
                shown = page.eval_on_selector_all('td[data-field=success_rate]', 'cells => cells.map(c => c.textContent)')
                assert shown == [f"{r['success_rate']:.3f}" for r in summary['results']]
                page.screenshot(path=str(tmp_path / f'{folder.name}.png'), full_page=True)
            page.click('button[data-play-pair]')
            page.wait_for_function('() => [...document.querySelectorAll(".pair video")]'
                                   '.every(v => !v.paused && v.currentTime > 0)', timeout=10_000)
            # Over harness.view: the listing links to the sweep's page, whose videos play as from disk.
            page.goto(f'http://127.0.0.1:{server.server_address[1]}/{PAGE}')
            page.click('a[href="sweeps/tiny-betas-0_1/index.html"]')
            page.wait_for_function(VIDEOS_READY, timeout=30_000)
            assert len(page.evaluate(VIDEO_STATE)) == len(json.loads((sweep / 'summary.json').read_text())['videos'])
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / 'tiny-betas-0_1.png').stat().st_size > 10_000
