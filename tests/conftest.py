"""Run the longest test files first.

The suite runs on two xdist workers, one whole file at a time (`--dist loadfile`), in collection order
(`--no-loadscope-reorder`; xdist's own order puts files with many tests first, which left the long
files with a few end-to-end tests to run alone at the end while the other worker idled). Handing out
the longest files first is the classic longest-processing-time rule: the last file to start is a short
one. The list names files whose `--durations` total is a minute or more on a 2-core machine; the order
within it only needs to be roughly right, and every other file keeps its alphabetical place after it.
"""
from pathlib import Path

LONGEST_FILES = (
    'test_harness_end_to_end.py',
    'test_harness_ray_sweep.py',
    'test_regression.py',
    'test_shipped.py',
    'test_sampler.py',
    'test_harness_page.py',
    'test_harness_crash_safety.py',
    'test_harness_train.py',
    'test_agents.py',
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(Path(item.nodeid.split('::')[0]).name, len(LONGEST_FILES)))
