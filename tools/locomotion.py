"""`python -m tools.locomotion success ...`: the same command as `python -m envs.locomotion success ...`
(how often the locomotion collectors reach a goal), kept under tools/ beside the other offline tools.
The one implementation lives in envs/locomotion.py, next to the collectors it replays."""

from __future__ import annotations

import sys

from envs.locomotion import main

if __name__ == '__main__':
    sys.exit(main(prog='python -m tools.locomotion'))
