"""facegcn.apps.video: a face video → per-frame 3D faces with one shared identity (``facegcn video``).

* :mod:`.run` — :func:`reconstruct_video` (key frames → tracking → smoothing → outputs), :class:`VideoResult`;
* :mod:`.options` — :class:`VideoOptions`;
* :mod:`.io` — probe, decode and encode videos (imageio-ffmpeg, the ``video`` extra);
* :mod:`.filters` — the One Euro and EMA filters, :func:`jitter`;
* :mod:`.keyframes` — the shared identity from the first frames with a face;
* :mod:`.tracker` — following the face frame to frame and smoothing the fits;
* :mod:`.outputs` — overlay frames, the mesh sequence, ``tracking.json`` and ``report.json``.

The per-frame fit itself is :func:`facegcn.coarse.track.track_frame`.
"""

from facegcn.apps.video.filters import EMAFilter, NoFilter, OneEuroFilter, jitter, make_filter
from facegcn.apps.video.io import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoWriter,
    count_frames,
    probe_video,
    read_video,
    select_frames,
)
from facegcn.apps.video.options import VideoOptions
from facegcn.apps.video.run import VideoResult, reconstruct_video
from facegcn.coarse.track import crop_change, track_frame, transfer_pose

__all__ = [
    "EMAFilter",
    "NoFilter",
    "OneEuroFilter",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoOptions",
    "VideoResult",
    "VideoWriter",
    "count_frames",
    "crop_change",
    "jitter",
    "make_filter",
    "probe_video",
    "read_video",
    "reconstruct_video",
    "select_frames",
    "track_frame",
    "transfer_pose",
]
