"""Headless GL backend choice: the user's MUJOCO_GL wins, else EGL, else OSMesa."""

from envs import rendering


def test_user_choice_is_kept(monkeypatch):
    monkeypatch.setenv('MUJOCO_GL', 'osmesa')  # restored at teardown
    monkeypatch.setattr(rendering, '_backend_works', lambda b: (_ for _ in ()).throw(AssertionError('probed')))
    assert rendering.choose_mujoco_gl() == 'osmesa'


def test_egl_first_then_osmesa(monkeypatch):
    for var in ('MUJOCO_GL', 'PYOPENGL_PLATFORM'):  # setenv first so teardown restores what choose_* sets
        monkeypatch.setenv(var, 'placeholder')
        monkeypatch.delenv(var)
    monkeypatch.setattr(rendering, '_backend_works', lambda b: b == 'osmesa')
    assert rendering.choose_mujoco_gl() == 'osmesa'
    monkeypatch.delenv('MUJOCO_GL')
    monkeypatch.setattr(rendering, '_backend_works', lambda b: True)
    assert rendering.choose_mujoco_gl() == 'egl'
    monkeypatch.delenv('MUJOCO_GL')
    monkeypatch.setattr(rendering, '_backend_works', lambda b: False)
    assert rendering.choose_mujoco_gl() is None
