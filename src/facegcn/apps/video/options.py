"""The options of :func:`~facegcn.apps.video.reconstruct_video` (``facegcn video``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from facegcn.coarse.track import TrackConfig
from facegcn.errors import ConfigError

__all__ = ["VideoOptions"]


@dataclass
class VideoOptions:
    """How a clip is fitted, smoothed and written.

    Args:
        key_frames: frames fitted fully (single-photo pipeline); their identity and albedo
            coefficients are averaged and then fixed for the whole clip.
        track: the per-frame fit (:class:`~facegcn.coarse.track.TrackConfig`: landmark and
            photometric steps, step sizes, the temporal prior on the expression).
        smoothing: temporal filter of the fitted coefficients: ``"one-euro"``, ``"ema"`` or ``"none"``.
        min_cutoff: One Euro filter cut-off at rest (Hz).
        beta: One Euro filter speed coefficient.
        d_cutoff: cut-off (Hz) of the One Euro filter's own low-pass on the derivative.
        ema_alpha: EMA weight of the newest value, in ``(0, 1]``.
        max_frames: stop after this many processed frames (``None``: the whole clip).
        stride: process every ``stride``-th frame.
        max_side: frames with a longer side are downscaled to it first (0 = never).
        mesh_format: per-frame meshes: ``"ply"``, ``"obj"`` or ``"none"``.
        posed: meshes posed in the reference camera frame (False: the canonical pose).
        side_by_side: write ``side_by_side.mp4`` (photo | render).
        fps: output frame rate (``None``: input fps / stride).
        quality: imageio-ffmpeg quality, 0..10.
        threads: torch/rasterizer CPU threads while tracking (0 = leave them as they are).
    """

    key_frames: int = 1
    track: TrackConfig = field(default_factory=TrackConfig)
    smoothing: str = "one-euro"
    min_cutoff: float = 1.0
    beta: float = 1.0
    d_cutoff: float = 1.0
    ema_alpha: float = 0.4
    max_frames: int | None = None
    stride: int = 1
    max_side: int = 1280
    mesh_format: str = "ply"
    posed: bool = True
    side_by_side: bool = True
    fps: float | None = None
    quality: float = 7.0
    threads: int = 1

    def validate(self) -> "VideoOptions":
        """Raise :class:`~facegcn.errors.ConfigError` (one line) on an invalid option; returns ``self``."""
        if self.smoothing not in ("one-euro", "ema", "none"):
            raise ConfigError(f"unknown smoothing {self.smoothing!r} (choose one-euro, ema or none)")
        if self.mesh_format not in ("ply", "obj", "none"):
            raise ConfigError(f"unknown mesh format {self.mesh_format!r} (choose ply, obj or none)")
        if self.key_frames < 1 or self.stride < 1:
            raise ConfigError("key frames and stride must be at least 1")
        if self.track.track_steps < 0 or self.track.photo_steps < 0:
            raise ConfigError("tracking steps must be >= 0")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError("max frames must be at least 1")
        if self.threads < 0:
            raise ConfigError("threads must be >= 0")
        if not 0 < self.ema_alpha <= 1:
            raise ConfigError("ema alpha must be in (0, 1]")
        if self.min_cutoff <= 0 or self.beta < 0 or self.d_cutoff <= 0:
            raise ConfigError("one-euro cut-offs must be > 0 and beta >= 0")
        return self
