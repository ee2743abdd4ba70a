"""The clip's identity: full single-photo reconstructions of its first frames with a face."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from facegcn.apps.video.io import select_frames
from facegcn.apps.video.options import VideoOptions
from facegcn.errors import InputError, NoFaceError
from facegcn.io.image import Photo
from facegcn.morphable import Coefficients

__all__ = ["KeyFrames", "fit_key_frames"]


@dataclass
class KeyFrames:
    """The key frames' reconstructions and the identity they fix for the whole clip.

    The first key frame is the *reference*: its aligned crop is the camera frame of the smoothed
    coefficients and of the mesh sequence.

    Attributes:
        reconstructions: :class:`~facegcn.pipeline.Reconstruction` per key frame, in clip order.
        indices: the clip frame index of each key frame.
        id: ``(1, n_id)`` mean identity coefficients.
        tex: ``(1, n_tex)`` mean albedo coefficients.
        albedo: ``(1, V, 3)`` float in [0, 1] on the pipeline's device: the refined albedo of a
            single key frame when refinement ran, else the 3DMM albedo of ``tex``.
        seconds: time spent reconstructing key frames.
    """

    reconstructions: list
    indices: list[int]
    id: torch.Tensor
    tex: torch.Tensor
    albedo: torch.Tensor
    seconds: float = 0.0

    @property
    def reference(self):
        """The first key frame's :class:`~facegcn.pipeline.Reconstruction`."""
        return self.reconstructions[0]

    @property
    def reference_frame(self) -> int:
        return self.indices[0]

    @property
    def reference_crop(self) -> np.ndarray:
        """``(2, 3)`` float64 photo → aligned-crop similarity of the reference frame."""
        return np.asarray(self.reference.observation.transform, np.float64)

    def at(self, index: int):
        """The key frame's reconstruction at clip frame ``index``, or ``None``."""
        return self.reconstructions[self.indices.index(index)] if index in self.indices else None

    def with_identity(self, c: Coefficients) -> Coefficients:
        """``c`` with the shared identity and albedo coefficients."""
        return replace(c, id=self.id, tex=self.tex)


def _first_faces(rec, name: str, frames: Iterator[np.ndarray], opts: VideoOptions) -> tuple[list, list[int], int]:
    keys: list = []
    indices: list[int] = []
    seen = 0
    try:
        for i, fr in select_frames(frames, opts.stride, opts.max_frames):
            seen += 1
            try:
                res = rec(Photo(fr, Path(f"{name}#{i}")))
            except NoFaceError:
                continue
            keys.append(res[0])
            indices.append(i)
            if len(keys) >= opts.key_frames:
                break
    finally:
        frames.close()
    return keys, indices, seen


def fit_key_frames(rec, video: str | os.PathLike, frames: Iterator[np.ndarray], opts: VideoOptions) -> KeyFrames:
    """Reconstruct the first ``opts.key_frames`` frames with a face and average their identity.

    Decodes only as far as the last key frame (no frame is buffered) and closes ``frames``.

    Args:
        rec: a loaded :class:`~facegcn.pipeline.Reconstructor` (its full single-photo pipeline,
            texture refinement included when enabled, runs on each key frame).
        video: the clip's path (names the key frames' photos ``NAME#INDEX``).
        frames: the clip's frames (:func:`~facegcn.apps.video.read_video`).
        opts: ``key_frames``, ``stride`` and ``max_frames`` are used.

    Returns:
        :class:`KeyFrames`.

    Raises:
        InputError: the clip has no frames. NoFaceError: no selected frame has a face.
    """
    t0 = time.perf_counter()
    keys, indices, seen = _first_faces(rec, Path(video).name, frames, opts)
    if not keys:
        if not seen:
            raise InputError(f"{video}: the video has no frames")
        raise NoFaceError(f"{video}: no face found in any of the {seen} frame(s)")
    id_shared = torch.stack([k.coarse.coeffs.id for k in keys]).mean(0)
    tex_shared = torch.stack([k.coarse.coeffs.tex for k in keys]).mean(0)
    if len(keys) == 1 and keys[0].refined_albedo is not None:
        albedo = keys[0].refined_albedo.detach().to(rec.device)[None]
    else:
        with torch.no_grad():
            albedo = rec.model.albedo(tex_shared.to(rec.device))
    return KeyFrames(keys, indices, id_shared, tex_shared, albedo, time.perf_counter() - t0)
