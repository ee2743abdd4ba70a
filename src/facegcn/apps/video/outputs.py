"""What a processed clip writes: the overlay frames, the mesh sequence, tracking.json, report.json."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from facegcn.apps.video.filters import jitter
from facegcn.apps.video.io import VideoInfo
from facegcn.apps.video.keyframes import KeyFrames
from facegcn.apps.video.options import VideoOptions
from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.coarse.track import crop_change, transfer_pose
from facegcn.frontend import Alignment, warp_to_photo
from facegcn.io.imageops import composite, image_to_uint8
from facegcn.io.mesh import write_obj, write_ply
from facegcn.morphable import Coefficients, MorphableModel
from facegcn.pipeline import EXPORT_SCALE
from facegcn.render import rigid_transform

__all__ = ["MeshSequence", "jitter_summary", "render_overlay", "report_document", "tracking_document"]

UNITS = "angles radians (x, y, z), R = Rz Ry Rx; trans decimetres; all in the reference frame's aligned crop camera"


def render_overlay(synthesis: FaceSynthesis, c_ref: Coefficients, albedo: torch.Tensor, reference_crop: np.ndarray,
                   crop: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The face rendered with ``c_ref`` and composited over the frame.

    Args:
        synthesis: the forward model.
        c_ref: coefficients in the reference crop's camera frame.
        albedo: per-vertex albedo.
        reference_crop: ``(2, 3)`` photo → crop similarity ``c_ref`` is expressed in.
        crop: ``(2, 3)`` photo → crop similarity of this frame's face (the render is drawn in it and
            warped back onto the frame).
        frame: the video frame.

    Returns:
        the composited frame.

    Shapes:
        albedo: ``(1, V, 3)`` in [0, 1]. frame and returns: ``(H, W, 3)`` uint8 RGB.
    """
    H, W = frame.shape[:2]
    c_show = transfer_pose(c_ref, crop_change(reference_crop, crop), synthesis.camera)
    with torch.no_grad():
        r = synthesis.render(synthesis.state(c_show, albedo=albedo))
    rgba = torch.cat([r.image[0].cpu().clamp(0, 1), r.mask[0].cpu().float()], 0)
    inverse = np.linalg.inv(np.vstack([crop, [0.0, 0.0, 1.0]]))[:2]
    back = warp_to_photo(rgba, Alignment(crop, inverse), (H, W))
    base = torch.from_numpy(np.array(frame)).permute(2, 0, 1).float() / 255
    return image_to_uint8(composite(back[:3], back[3:4].clamp(0, 1), base))


class MeshSequence:
    """Writes ``meshes/frame_NNNNNN.{ply,obj}``: the shared identity with each frame's expression,
    posed in the reference camera frame (camera at (0, 0, 1 m) looking down −z; ``posed=False``:
    the canonical pose), in metres, vertex colours = the shared albedo.

    Args:
        out: the clip's output folder (the meshes go to ``out/meshes``).
        model: the morphable model.
        albedo: ``(1, V, 3)`` per-vertex colours in [0, 1].
        mesh_format: ``"ply"``, ``"obj"`` or ``"none"`` (write nothing).
        posed: apply each frame's rigid pose.
    """

    def __init__(self, out: Path, model: MorphableModel, albedo: torch.Tensor, mesh_format: str, posed: bool):
        self.out, self.model, self.mesh_format, self.posed = out, model, mesh_format, posed
        self.folder = out / "meshes"
        self.faces = model.faces.cpu().numpy()
        self.colors = albedo[0].detach().clamp(0, 1).cpu()
        if self.enabled:
            self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.mesh_format != "none"

    def write(self, index: int, c: Coefficients) -> str | None:
        """Write frame ``index``'s mesh; returns its path relative to ``out`` (``None`` when disabled)."""
        if not self.enabled:
            return None
        with torch.no_grad():
            verts = self.model.shape(c.id, c.exp)
            if self.posed:
                verts = rigid_transform(verts, c.angles, c.trans)
            normals = self.model.vertex_normals(verts)[0].cpu()
            verts = verts[0].cpu() * EXPORT_SCALE
        name = self.folder / f"frame_{index:06d}.{self.mesh_format}"
        if self.mesh_format == "ply":
            write_ply(name, verts, self.faces, vertex_colors=self.colors, normals=normals)
        else:
            write_obj(name, verts, self.faces, vertex_colors=self.colors)
        return str(name.relative_to(self.out))


def jitter_summary(records: list[dict], kind: str) -> dict[str, float]:
    """:func:`~facegcn.apps.video.filters.jitter` of the tracked frames' ``kind`` (``"raw"`` or
    ``"smoothed"``) angles, trans and exp (``{}`` when no frame was tracked)."""
    tracked = [r for r in records if r.get("raw")]
    if not tracked:
        return {}
    return {k: jitter(np.array([r[kind][k] for r in tracked])) for k in ("angles", "trans", "exp")}


def tracking_document(video, info: VideoInfo, fps_out: float, opts: VideoOptions, config_doc: dict,
                      keys: KeyFrames, records: list[dict]) -> dict:
    """The contents of ``tracking.json``: the clip, the options, the shared identity and every
    frame's record (raw and smoothed coefficients, landmark error, status)."""
    return {
        "video": str(video), "fps": info.fps, "fps_out": fps_out, "size": [info.width, info.height],
        "options": asdict(opts), "config": config_doc,
        "reference_frame": keys.reference_frame, "reference_crop": keys.reference_crop.tolist(),
        "key_frames": sorted(keys.indices),
        "identity": keys.id[0].tolist(), "albedo_coefficients": keys.tex[0].tolist(),
        "units": UNITS,
        "frames": records,
    }


def report_document(video, records: list[dict], video_frames: int, smoothing: str, jitter_raw: dict,
                    jitter_smoothed: dict, timings: dict, files: dict) -> dict:
    """The contents of ``report.json``: counts, jitter of the raw vs smoothed fits, timings, files."""
    tracked = [r for r in records if r.get("raw")]
    errors = [r["landmark_px"] for r in tracked if r["landmark_px"] is not None]
    return {
        "video": str(video), "frames": len(records),
        "frames_ok": sum(1 for r in records if r["status"] == "ok"),
        "frames_no_face": sum(1 for r in records if r["status"] == "no_face"),
        "video_frames_written": video_frames,
        "meshes_written": sum(1 for r in records if "mesh" in r),
        "smoothing": smoothing, "jitter_raw": jitter_raw, "jitter_smoothed": jitter_smoothed,
        "mean_landmark_px": float(np.mean(errors or [float("nan")])),
        "timings": timings, "files": files,
    }
