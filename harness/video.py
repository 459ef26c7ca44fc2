"""MP4 videos of evaluation episodes with the guidance norm drawn under the frames.

The strip under each frame plots, per env step, the applied guidance ‖β∇Q‖ and the flow velocity
‖v‖ (each averaged over the K flow steps), with a red cursor at the frame's step -- so one sees
where in the episode the critic pushed the actions away from behaviour cloning. With action chunks
the strip's title gives h, and the cursor is red on the frames of a chunk's first env step (where
the chunk was sampled) and orange inside a chunk.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import imageio.v2 as imageio
import numpy as np

from harness.files import atomic_target
from harness.plots import render_strip

STRIP_HEIGHT = 96


def _even(n: int) -> int:
    return n + (n % 16 and 16 - n % 16)


CHUNK_START_CURSOR, IN_CHUNK_CURSOR = (220, 30, 30), (240, 150, 20)


def compose_frames(frames: Sequence[np.ndarray], frame_steps: Sequence[int], norms: dict[str, np.ndarray],
                   beta: float, horizon: int = 1) -> np.ndarray:
    """[T, H + strip, W, 3] uint8: each frame above the norm strip with the cursor at its step.

    H and W are padded up to multiples of 16, the macro-block size of H.264 encoders.
    """
    height, width = frames[0].shape[:2]
    out_w, out_h = _even(width), _even(height + STRIP_HEIGHT)
    strip, column = render_strip(norms, out_w, out_h - height, beta, horizon)
    video = np.zeros((len(frames), out_h, out_w, 3), np.uint8)
    for n, (frame, step) in enumerate(zip(frames, frame_steps)):
        video[n, :height, :width] = frame[..., :3]
        video[n, height:] = strip
        x, top, bottom = column(step)
        video[n, height + top:height + bottom, x] = CHUNK_START_CURSOR if step % horizon == 0 else IN_CHUNK_CURSOR
    return video


def write_video(path: Path, frames: Sequence[np.ndarray], frame_steps: Sequence[int], norms: dict[str, np.ndarray],
                beta: float, fps: int = 20, horizon: int = 1) -> Path:
    """Encode an mp4 (libx264 through imageio-ffmpeg) atomically."""
    # imageio starts ffmpeg with fork+exec; JAX's fork warning does not apply to an immediate exec.
    warnings.filterwarnings('ignore', message='os.fork\\(\\) was called')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video = compose_frames(frames, frame_steps, norms, beta, horizon)
    with atomic_target(path) as tmp, imageio.get_writer(tmp, fps=fps, codec='libx264', quality=7,
                                                         macro_block_size=16, ffmpeg_log_level='error') as writer:
        for frame in video:
            writer.append_data(frame)
    return path
