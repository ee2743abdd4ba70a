"""The "cascade" detector: dlib's HOG first, then detectors that find the faces it misses.

dlib's frontal HOG detector misses turned faces (beyond ~30° of yaw on renders of the ICT head,
most |yaw| ≥ 45° photos). The cascade keeps every dlib face and adds:

* ``cascade_add`` stages (default BlazeFace, MediaPipe's short- and full-range models, ~20-50 ms):
  always run; a face they find that does not overlap an already kept face is added;
* ``cascade_fallback`` stages (default MTCNN): run only when no face has been kept so far.

Every candidate keeps the false-positive check of :mod:`facegcn.frontend.detect`: dlib's and
BlazeFace's boxes are re-scored by MTCNN's O-Net (``confidence``; BlazeFace's own score is the
``detector_score``), MTCNN's carry their cascade (O-Net) probability; candidates below
``verify_threshold`` are rejected by :func:`~facegcn.frontend.detect.find_faces`. Two boxes are the
same face when their IoU exceeds 0.3 or the centre of either lies inside the other.
"""

from __future__ import annotations

import numpy as np

from facegcn.errors import ConfigError
from facegcn.frontend.detect import (
    Candidate,
    DetectorConfig,
    _downscale,
    detect_dlib,
    detect_mtcnn_candidates,
    verify_boxes,
)

STAGES = ("dlib", "blazeface", "mtcnn")


def same_face(a: np.ndarray, b: np.ndarray, iou: float = 0.3) -> bool:
    """Whether boxes ``a`` and ``b`` (x1, y1, x2, y2) are one face (IoU > ``iou`` or a centre of one
    inside the other)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter
    if union > 0 and inter / union > iou:
        return True
    inside = lambda p, q: q[0] <= p[0] <= q[2] and q[1] <= p[1] <= q[3]  # noqa: E731
    return inside((a[:2] + a[2:]) / 2, b) or inside((b[:2] + b[2:]) / 2, a)


def detect_blazeface_candidates(pixels: np.ndarray, config: DetectorConfig | None = None) -> list[Candidate]:
    """BlazeFace (each of ``config.blazeface_kinds``; the same face found by both is kept once, at
    its better score) on the downscaled photo, every box verified by O-Net."""
    from facegcn.frontend.blazeface import detect_faces

    cfg = config or DetectorConfig()
    small, s = _downscale(pixels, cfg.max_detect_side)
    dets = []
    for kind in cfg.blazeface_kinds:
        for d in detect_faces(small, kind=kind):
            if not any(same_face(d.box, e.box) for e in dets):
                dets.append(d)
    dets.sort(key=lambda d: -d.score)
    if not dets:
        return []
    boxes = np.array([d.box for d in dets]) / s
    conf = verify_boxes(pixels, boxes)
    return [Candidate(box=b, confidence=float(c), detector_score=float(d.score), detector="blazeface",
                      keypoints=np.asarray(d.keypoints, np.float64) / s) for b, c, d in zip(boxes, conf, dets)]


def _stage(name: str, pixels: np.ndarray, cfg: DetectorConfig) -> list[Candidate]:
    if name == "dlib":
        return detect_dlib(pixels, cfg)
    if name == "mtcnn":
        return detect_mtcnn_candidates(pixels, cfg)
    if name == "blazeface":
        return detect_blazeface_candidates(pixels, cfg)
    raise ConfigError(f"unknown cascade stage {name!r} (choose from {', '.join(STAGES)})")


def detect_cascade(pixels: np.ndarray, config: DetectorConfig | None = None) -> list[Candidate]:
    """Candidates of the cascade (module docstring), unranked: every kept face once, plus the
    rejected candidates that do not duplicate an earlier candidate (for the rejection count)."""
    cfg = config or DetectorConfig()
    for name in (*cfg.cascade_add, *cfg.cascade_fallback):
        if name not in STAGES:
            raise ConfigError(f"unknown cascade stage {name!r} (choose from {', '.join(STAGES)})")
    out = detect_dlib(pixels, cfg)

    def merge(new: list[Candidate]) -> None:
        kept = [c for c in out if c.confidence >= cfg.verify_threshold]
        for c in new:
            ok = c.confidence >= cfg.verify_threshold
            if any(same_face(c.box, k.box) for k in kept):
                continue
            if not ok and any(same_face(c.box, k.box) for k in out):
                continue
            out.append(c)
            if ok:
                kept.append(c)

    for name in cfg.cascade_add:
        merge(_stage(name, pixels, cfg))
    for name in cfg.cascade_fallback:
        if any(c.confidence >= cfg.verify_threshold for c in out):
            break
        merge(_stage(name, pixels, cfg))
    return out
