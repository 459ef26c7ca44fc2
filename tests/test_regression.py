"""Success-rate regression: the fixed pointmaze pipeline of tools/baseline.py against the committed
baseline artifacts/baselines/pointmaze-small.json (rewrite it only with `python -m tools.baseline --update`)."""
import json

import pytest

from tools.baseline import BASELINE_PATH, compare, run_pipeline, settings


@pytest.mark.slow
def test_pointmaze_small_success_matches_baseline(tmp_path):
    baseline = json.loads(BASELINE_PATH.read_text())
    assert baseline['settings'] == settings(), 'pipeline settings changed: run `python -m tools.baseline --update`'
    measured = run_pipeline(workdir=tmp_path)
    assert set(measured['success']) == set(baseline['success'])
    failures = compare(measured, baseline)
    assert not failures, '; '.join(failures)
