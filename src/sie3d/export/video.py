"""MP4 video through the ffmpeg binary of the `imageio-ffmpeg` wheel (no system ffmpeg needed)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


def write_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float = 25.0, crf: int = 18) -> int:
    """Encode (H, W, 3) uint8 RGB frames (H and W even) as H.264 in an MP4 (yuv420p, playable in browsers
    and players; `crf` 18: visually lossless) at `fps`; returns the number of frames. All frames must
    share the first one's size."""
    import imageio_ffmpeg

    writer = None
    count = 0
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame, np.uint8)
            height, width = frame.shape[:2]
            if writer is None:
                if frame.ndim != 3 or frame.shape[2] != 3 or height % 2 or width % 2:
                    raise ValueError(f"frames must be (H, W, 3) uint8 with even H and W, got {frame.shape}")
                writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                                     quality=None, macro_block_size=2,
                                                     output_params=["-crf", str(crf), "-movflags", "+faststart"])
                writer.send(None)  # start ffmpeg
            writer.send(frame)
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError("no frames to write")
    return count
