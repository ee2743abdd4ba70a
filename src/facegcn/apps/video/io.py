"""Video files through imageio-ffmpeg's bundled ffmpeg: probe, decode, encode, count frames.

imageio-ffmpeg is the optional ``video`` extra (``pip install facegcn[video]``); it is imported
where it is used so that the rest of the package works without it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from facegcn.errors import InputError, OutputError

__all__ = ["VIDEO_EXTENSIONS", "VideoInfo", "VideoWriter", "count_frames", "probe_video", "read_video",
           "select_frames"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"})


@dataclass
class VideoInfo:
    """A decoded clip's geometry: ``width``/``height`` in pixels (after any downscaling), ``fps``
    frames per second, ``n_frames`` from the container (may be approximate, ``None`` if unknown)."""

    path: str
    width: int
    height: int
    fps: float
    n_frames: int | None


#: ffmpeg's messages → what they mean for the user (first match wins)
_FFMPEG_REASONS = (
    ("Invalid data found when processing input", "not a video file, or a damaged one"),
    ("moov atom not found", "the file is incomplete: no index, a recording cut short?"),
    ("does not contain any stream", "the file holds no video stream"),
    ("no video stream", "the file holds no video stream"),
    ("Permission denied", "permission denied"),
    ("No such file or directory", "no such file"),
    ("Decoder not found", "the video codec is not supported"),
    ("not supported", "the video codec is not supported"),
    ("No space left on device", "no space left on device"),
    ("Broken pipe", "ffmpeg stopped unexpectedly"),
)


def ffmpeg_reason(exc: BaseException) -> str:
    """A short, user-facing reason for an ffmpeg (imageio-ffmpeg) failure, without ffmpeg's
    log fragments (addresses, stream numbers, version banners)."""
    text = " ".join(str(exc).split())
    for needle, reason in _FFMPEG_REASONS:
        if needle.lower() in text.lower():
            return reason
    return "ffmpeg could not read it" if not isinstance(exc, StopIteration) else "no frames"


def _open_video(p: Path):
    import imageio_ffmpeg  # optional dependency (the "video" extra)

    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    gen = imageio_ffmpeg.read_frames(str(p), pix_fmt="rgb24")
    try:
        meta = next(gen)
        if not meta.get("size"):
            raise ValueError("no video stream")
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as exc:
        gen.close()
        raise InputError(f"{p}: cannot decode as a video ({ffmpeg_reason(exc)})") from None
    return gen, meta


def probe_video(path: str | os.PathLike) -> dict:
    """Check that ``path`` opens as a video, without decoding it.

    Args:
        path: the video file.

    Returns:
        ffmpeg's metadata: ``size`` (width, height), ``fps``, ``duration`` (seconds), ``nframes``, ...

    Raises:
        InputError: missing, empty or undecodable file (one line).
    """
    gen, meta = _open_video(Path(path))
    gen.close()
    return meta


def _frame_count(meta: dict, fps: float) -> int | None:
    nframes = meta.get("nframes")
    if isinstance(nframes, (int, float)) and math.isfinite(nframes) and nframes > 0:
        return int(nframes)
    if meta.get("duration"):
        return int(round(float(meta["duration"]) * fps)) or None
    return None


def _decode(gen, p: Path, size: tuple[int, int], out_size: tuple[int, int]) -> Iterator[np.ndarray]:
    w, h = size
    try:
        for raw in gen:
            a = np.frombuffer(raw, np.uint8)
            if a.size != w * h * 3:  # a truncated last frame
                break
            a = a.reshape(h, w, 3)
            if out_size != size:
                a = np.asarray(Image.fromarray(a).resize(out_size, Image.BILINEAR))
            yield a
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{p}: video decoding failed ({ffmpeg_reason(exc)})") from None
    finally:
        gen.close()


def read_video(path: str | os.PathLike, *, max_side: int = 0) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """Open a video for decoding, frame by frame.

    Args:
        path: the video file (anything ffmpeg reads).
        max_side: downscale (bilinear) frames whose longer side exceeds this many pixels (0 = never).

    Returns:
        ``(info, frames)``: :class:`VideoInfo` and a generator of frames (close it to stop early).

    Shapes:
        each frame: ``(H, W, 3)`` uint8 RGB, ``H, W = info.height, info.width``.

    Raises:
        InputError: unreadable file, at open or while decoding (one line).
    """
    p = Path(path)
    gen, meta = _open_video(p)
    w, h = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 0) or 25.0
    scale = max_side / max(w, h) if max_side and max(w, h) > max_side else 1.0
    ow, oh = (max(2, int(round(w * scale))), max(2, int(round(h * scale)))) if scale != 1.0 else (w, h)
    info = VideoInfo(str(p), ow, oh, fps, _frame_count(meta, fps))
    return info, _decode(gen, p, (w, h), (ow, oh))


def select_frames(frames, stride: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Every ``stride``-th frame, with its index in the clip, stopping after ``max_frames`` of them.

    Args:
        frames: iterable of frames (e.g. from :func:`read_video`).
        stride: keep frames ``0, stride, 2·stride, ...``.
        max_frames: stop after this many kept frames (``None`` or 0: no limit).

    Returns:
        a generator of ``(index, frame)``.
    """
    k = 0
    for i, fr in enumerate(frames):
        if i % stride:
            continue
        yield i, fr
        k += 1
        if max_frames and k >= max_frames:
            break


class VideoWriter:
    """H.264 (yuv420p) writer via imageio-ffmpeg; frames are padded to even sizes.

    The file appears under its name only when :meth:`close` succeeds (it is written to a temporary
    name, then renamed); :meth:`abort` removes the partial file.

    Args:
        path: the output file (``.mp4``).
        fps: frame rate.
        quality: imageio-ffmpeg quality, 0..10.
    """

    def __init__(self, path: str | os.PathLike, fps: float, quality: float = 7.0):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = float(fps)
        self.quality = quality
        self._gen = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def _start(self, size: tuple[int, int]) -> None:
        import imageio_ffmpeg  # optional dependency (the "video" extra)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size = size
        self._gen = imageio_ffmpeg.write_frames(
            str(self.tmp), size, fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
            quality=self.quality, macro_block_size=2, ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart"])
        self._gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        """Append one frame.

        Shapes:
            frame: ``(H, W, 3)`` uint8 RGB; every frame of a file must have the same size.
        """
        h, w = frame.shape[:2]
        H, W = h + (h % 2), w + (w % 2)
        if self._gen is None:
            self._start((W, H))
        if (W, H) != self._size:
            raise OutputError(f"{self.path}: frame size changed from {self._size} to {(W, H)}")
        if (H, W) != (h, w):
            frame = np.pad(frame, ((0, H - h), (0, W - w), (0, 0)), mode="edge")
        try:
            self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot write {self.path}: {ffmpeg_reason(exc)}") from None
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file; returns its path (``None`` when no frame was written)."""
        if self._gen is None:
            return None
        try:
            self._gen.close()
        except (OSError, RuntimeError) as exc:
            raise OutputError(f"cannot write {self.path}: {ffmpeg_reason(exc)}") from None
        self._gen = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop and delete the partial file (best effort, never raises)."""
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
            self._gen = None
        try:
            self.tmp.unlink()
        except OSError:
            pass


def count_frames(path: str | os.PathLike) -> int:
    """Exact number of decodable frames of a video (decodes the whole file)."""
    import imageio_ffmpeg  # optional dependency (the "video" extra)

    return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
