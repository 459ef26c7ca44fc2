"""MP4 assembly with the guidance-norm strip."""
import imageio.v2 as imageio
import numpy as np

from harness.video import STRIP_HEIGHT, compose_frames, write_video


def test_strip_under_frames_with_moving_cursor():
    frames = [np.full((40, 40, 3), 200, np.uint8) for _ in range(3)]
    norms = {'‖β∇Q‖': np.linspace(0, 1, 30), '‖v‖': np.ones(30)}
    video = compose_frames(frames, [0, 15, 29], norms, beta=1.0)
    assert video.shape[0] == 3 and video.shape[1] >= 40 + STRIP_HEIGHT - 16 and video.shape[1] % 16 == 0
    assert (video[:, :40, :40] == 200).all()
    red = (video[..., 0] == 220) & (video[..., 1] == 30)
    columns = [np.flatnonzero(red[n, 40:].any(axis=0)) for n in range(3)]
    assert columns[0][0] < columns[1][0] < columns[2][0]


def test_write_video_counts_frames(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(12)]
    path = write_video(tmp_path / 'v.mp4', frames, list(range(12)), {'‖β∇Q‖': np.ones(12)}, beta=0.3)
    assert path.exists() and imageio.get_reader(path).count_frames() == 12
    assert not list(tmp_path.glob('.*tmp*'))


def test_the_cursor_tells_a_chunk_start_from_a_step_inside_a_chunk():
    frames = [np.full((40, 40, 3), 200, np.uint8) for _ in range(4)]
    video = compose_frames(frames, [0, 1, 3, 5], {'‖β∇Q‖': np.ones(12)}, beta=1.0, horizon=3)
    strip = video[:, 40:]
    start = (strip[..., 0] == 220) & (strip[..., 1] == 30)
    inside = (strip[..., 0] == 240) & (strip[..., 1] == 150)
    assert [bool(start[n].any()) for n in range(4)] == [True, False, True, False]
    assert [bool(inside[n].any()) for n in range(4)] == [False, True, False, True]
