"""A clip → per-frame 3D faces with one shared identity, temporally smoothed: :func:`reconstruct_video`."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from facegcn.apps.video.filters import make_filter
from facegcn.apps.video.io import VideoInfo, VideoWriter, read_video, select_frames
from facegcn.apps.video.keyframes import KeyFrames, fit_key_frames
from facegcn.apps.video.options import VideoOptions
from facegcn.apps.video.outputs import (
    MeshSequence,
    jitter_summary,
    render_overlay,
    report_document,
    tracking_document,
)
from facegcn.apps.video.tracker import FaceTracker, Smoother, coefficients_from_vectors
from facegcn.errors import OutputError
from facegcn.io.atomic import atomic_write_text
from facegcn.io.jsonfile import strict_json
from facegcn.pipeline import restore_threads, set_threads

__all__ = ["VideoResult", "reconstruct_video"]

_STAGES = ("keyframes_s", "observe_s", "track_s", "render_s", "write_s")


@dataclass
class VideoResult:
    """What :func:`reconstruct_video` returns.

    Attributes:
        out: the output folder.
        info: the input clip (after any downscaling).
        frames: one record per processed frame, as in ``tracking.json`` (``index``, ``time_s``,
            ``status`` ``"ok"``/``"no_face"``, ``landmark_px``, ``raw`` and ``smoothed`` coefficients
            in the reference crop, ``mesh``).
        files: ``{kind: path}`` of what was written (``video``, ``meshes``, ``tracking``, ``report``,
            ``keyframe`` and ``keyframe_*``).
        jitter_raw, jitter_smoothed: :func:`~facegcn.apps.video.filters.jitter` of the raw and the
            smoothed ``angles`` (radians), ``trans`` (decimetres) and ``exp``.
        timings: seconds per stage (``keyframes_s``, ``observe_s``, ``track_s``, ``render_s``,
            ``write_s``, ``total_s``).
    """

    out: Path
    info: VideoInfo
    frames: list[dict]
    files: dict[str, str]
    jitter_raw: dict[str, float]
    jitter_smoothed: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def _lap(timings: dict[str, float], stage: str, t0: float) -> float:
    now = time.perf_counter()
    timings[stage] += now - t0
    return now


def _output_folder(out: str | os.PathLike) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    return out


def _progress_bar(info: VideoInfo, opts: VideoOptions, show: bool) -> tqdm:
    total = info.n_frames
    if total is not None:
        total = -(-total // opts.stride)
        if opts.max_frames:
            total = min(total, opts.max_frames)
    bar = tqdm(total=total, desc="video", unit="frame", disable=not show, file=sys.stderr, dynamic_ncols=True)
    bar.set_postfix_str("fitting the key frame" + ("s" if opts.key_frames > 1 else ""))
    return bar


class _TrackingPass:
    """The second pass over the clip: every selected frame is tracked, smoothed and written."""

    def __init__(self, rec, keys: KeyFrames, opts: VideoOptions, out: Path, info: VideoInfo, timings: dict):
        self.keys, self.opts, self.info, self.timings = keys, opts, info, timings
        self.synthesis, self.device = rec.synthesis, rec.device
        self.tracker = FaceTracker(rec.synthesis, rec.fitter.loss, keys, opts.track,
                                   detector=rec.cfg.frontend.detector, device=rec.device, box_exp=rec.fitter.box_exp)
        self.smoother = Smoother(make_filter(opts), keys.reference_crop, rec.synthesis.camera, rec.fitter.box_exp)
        self.meshes = MeshSequence(out, rec.model, keys.albedo, opts.mesh_format, opts.posed)
        self.fps_out = opts.fps or info.fps / opts.stride
        self.writer = VideoWriter(out / "side_by_side.mp4", self.fps_out, opts.quality) if opts.side_by_side else None
        self.records: list[dict] = []

    def frame(self, index: int, frame: np.ndarray) -> None:
        t = time.perf_counter()
        obs = self.tracker.observe(index, frame)
        t = _lap(self.timings, "observe_s", t)
        err = self.tracker.fit(index, obs) if obs is not None else None
        _lap(self.timings, "track_s", t)
        row: dict = {"index": index, "time_s": index / self.info.fps, "status": "ok" if obs is not None else "no_face",
                     "landmark_px": err}
        self.records.append(row)
        if self.tracker.current is None:  # nothing to show yet (no face seen before this frame)
            row.update(raw=None, smoothed=None)
            if self.writer is not None:
                self.writer.write(np.concatenate([frame, frame], axis=1))
            return
        c, crop = self.tracker.current  # this frame's fit, or the last one when it has no face
        raw, smoothed = self.smoother(c, crop, index / self.info.fps)
        row.update(raw={k: v.tolist() for k, v in raw.items()}, smoothed={k: v.tolist() for k, v in smoothed.items()})
        t = time.perf_counter()
        c_ref = coefficients_from_vectors(smoothed, self.keys, self.device)
        if self.writer is not None:
            right = render_overlay(self.synthesis, c_ref, self.keys.albedo, self.keys.reference_crop, crop, frame)
            self.writer.write(np.concatenate([frame, right], axis=1))
        t = _lap(self.timings, "render_s", t)
        mesh = self.meshes.write(index, c_ref)
        if mesh is not None:
            row["mesh"] = mesh
        _lap(self.timings, "write_s", t)

    def run(self, video: str | os.PathLike, bar: tqdm) -> dict[str, str]:
        """Track the whole clip (decoded again, in order); returns ``{"video": path}`` when written."""
        saved = set_threads(self.opts.threads)
        try:
            _, frames = read_video(video, max_side=self.opts.max_side)
            try:
                for i, fr in select_frames(frames, self.opts.stride, self.opts.max_frames):
                    self.frame(i, fr)
                    bar.update(1)
            finally:
                frames.close()
            path = self.writer.close() if self.writer is not None else None
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise
        finally:
            restore_threads(saved)
        return {"video": str(path)} if path is not None else {}


def reconstruct_video(rec, video: str | os.PathLike, out: str | os.PathLike, options: VideoOptions | None = None,
                      *, progress: bool | None = None) -> VideoResult:
    """Reconstruct a face video: one shared identity, tracked and smoothed pose/expression/light.

    1. *Identity*: the first ``key_frames`` frames with a face get the full single-photo
       reconstruction; their identity and albedo coefficients are averaged and fixed for the clip
       (the first key frame's files are written to ``OUT/keyframe/``).
    2. *Tracking*: every selected frame is observed and fitted from the previous frame's fit with
       only pose, expression and SH light free (:func:`facegcn.coarse.track.track_frame`); a frame
       without a face keeps the previous fit (status ``"no_face"``).
    3. *Smoothing*: the fits, carried into the first key frame's crop, are filtered over time
       (``options.smoothing``).
    4. *Outputs* in ``OUT/``: ``config.json`` (the reconstruction settings),
       ``meshes/frame_NNNNNN.ply`` (or ``.obj``; metres, posed in the reference
       camera frame unless ``posed=False``), ``side_by_side.mp4`` (frame | smoothed render over it,
       H.264), ``tracking.json`` (per-frame raw and smoothed coefficients, errors, status) and
       ``report.json`` (counts, timings, jitter of raw vs smoothed pose).

    Args:
        rec: a loaded :class:`~facegcn.pipeline.Reconstructor`.
        video: the clip (anything ffmpeg reads).
        out: the output folder (created).
        options: :class:`VideoOptions` (default: its defaults).
        progress: show a progress bar on stderr (default: ``rec.cfg.progress``).

    Returns:
        :class:`VideoResult`.

    Raises:
        InputError: unreadable clip or no frames. NoFaceError: no face in any selected frame.
        OutputError: the output cannot be written.
    """
    opts = (options or VideoOptions()).validate()
    out = _output_folder(out)
    atomic_write_text(out / "config.json", rec.cfg.to_json())  # the run's settings, beside its outputs
    info, frames = read_video(video, max_side=opts.max_side)
    timings = dict.fromkeys(_STAGES, 0.0)
    t_all = time.perf_counter()
    bar = _progress_bar(info, opts, rec.cfg.progress if progress is None else progress)
    try:
        keys = fit_key_frames(rec, video, frames, opts)
        timings["keyframes_s"] = keys.seconds
        key_files = rec.write(keys.reference, out / "keyframe")
        files = {"keyframe": str(out / "keyframe"), **{f"keyframe_{k}": v for k, v in key_files.items()}}
        tracking = _TrackingPass(rec, keys, opts, out, info, timings)
        bar.set_postfix_str("tracking")
        files.update(tracking.run(video, bar))
    finally:
        bar.close()
    records = tracking.records
    j_raw, j_sm = jitter_summary(records, "raw"), jitter_summary(records, "smoothed")
    timings["total_s"] = time.perf_counter() - t_all
    if tracking.meshes.enabled:
        files["meshes"] = str(tracking.meshes.folder)
    doc = tracking_document(video, info, tracking.fps_out, opts, rec.cfg.to_dict(), keys, records)
    atomic_write_text(out / "tracking.json", strict_json(doc, indent=1))
    frames_written = tracking.writer.frames if tracking.writer is not None else 0
    report = report_document(video, records, frames_written, opts.smoothing, j_raw, j_sm, timings, files)
    atomic_write_text(out / "report.json", strict_json(report, indent=1))
    files["tracking"] = str(out / "tracking.json")
    files["report"] = str(out / "report.json")
    return VideoResult(out, info, records, files, j_raw, j_sm, timings)
