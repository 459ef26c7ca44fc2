"""Headless MuJoCo OpenGL backend choice (EGL, falling back to OSMesa).

MuJoCo reads MUJOCO_GL once, when it is first imported, so the choice has to be made before any
worker imports it. We probe in a throw-away interpreter so a failed backend cannot poison this one.
"""

from __future__ import annotations

import os
import subprocess
import sys

_PROBE = (
    "import os, sys; os.environ['MUJOCO_GL'] = sys.argv[1]; import mujoco; "
    "ctx = mujoco.GLContext(8, 8); ctx.make_current(); ctx.free()"
)


def _backend_works(backend: str) -> bool:
    try:
        result = subprocess.run(
            [sys.executable, '-c', _PROBE, backend], capture_output=True, timeout=60, env=dict(os.environ)
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def choose_mujoco_gl() -> str | None:
    """Set and return MUJOCO_GL: keep the user's choice, else 'egl' if it works, else 'osmesa', else None."""
    if os.environ.get('MUJOCO_GL'):
        return os.environ['MUJOCO_GL']
    for backend in ('egl', 'osmesa'):
        if _backend_works(backend):
            os.environ['MUJOCO_GL'] = backend
            os.environ.setdefault('PYOPENGL_PLATFORM', backend)
            return backend
    return None
